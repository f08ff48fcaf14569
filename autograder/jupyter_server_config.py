"""Jupyter server configuration `llmprep lab` loads (JUPYTER_CONFIG_PATH=autograder/).

Saving a notebook drops the Python version JupyterLab writes into its ``language_info``, so that
opening and saving a committed notebook leaves it byte-identical (see llmprep.jupyter.pre_save).
Formgrader's view of a submission lets the grader's verdict lines wrap, as the feedback pages do.
"""
c = get_config()  # noqa: F821 - provided by traitlets when the server loads this file

c.ContentsManager.pre_save_hook = "llmprep.jupyter.pre_save"
c.HTMLExporter.preprocessors = ["llmprep.feedback.WrapVerdicts"]
