"""The `llmprep` command line: every bad input is one `error: ...` line on stderr and a non-zero exit,
before any work; help for every command; the learner's workspace; nbgrader's tracebacks in one line."""
import io
import json
import os

import nbformat
import pytest

from llmprep import cli, course, headless
from llmprep.results import merge_results

CHAPTERS = "the chapters are: ch01_training"

BAD_INPUTS = [
    # (argv, exit code, fragment of the one-line message)
    (["frob"], 2, "invalid choice: 'frob'"),
    ([], 2, "required: COMMAND"),
    (["run", "ch99_nope"], 2, f"unknown chapter 'ch99_nope'; {CHAPTERS}"),
    (["run", "course/ch99_nope/"], 2, "unknown chapter 'course/ch99_nope/'"),
    (["run", "--jobs", "-1"], 2, "argument --jobs: must be at least 1 (got -1)"),
    (["run", "--jobs", "0"], 2, "argument --jobs: must be at least 1 (got 0)"),
    (["run", "--jobs", "two"], 2, "must be a whole number (got 'two')"),
    (["run", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["check"], 2, "required: NOTEBOOK"),
    (["check", "{tmp}/missing.ipynb"], 2, "missing.ipynb does not exist"),
    (["check", "{tmp}"], 2, "is a folder, not a notebook"),
    (["check", "{tmp}/empty.ipynb"], 2, "empty.ipynb is empty"),
    (["check", "{tmp}/notes.txt"], 2, "notes.txt is not a readable notebook"),
    (["check", "{tmp}/binary.ipynb"], 2, "binary.ipynb is not a readable notebook"),
    (["check", "{tmp}/plain.ipynb"], 2, "no graded cell of this notebook matches an exercise"),
    (["check", "/dev/null"], 2, "/dev/null is not a regular file"),
    (["grade", "ch99_nope"], 2, "unknown assignment 'ch99_nope'; the assignments are: ch01_training"),
    (["grade", "ch01_training", "--jobs", "-1"], 2, "argument --jobs: must be at least 1 (got -1)"),
    (["grade"], 2, "required: ASSIGNMENT"),
    (["start", "ch99"], 2, f"unknown chapter 'ch99'; {CHAPTERS}"),
    (["release", "ch99"], 2, f"unknown chapter 'ch99'; {CHAPTERS}"),
    (["release", "--check", "ch01_training"], 2, "--check compares all of course/"),
    (["nbgrader", "validate", "relative/path.ipynb"], 2, "no notebook matches 'relative/path.ipynb' (paths are relative to"),
    (["nbgrader", "validate", "empty.ipynb"], 2, "empty.ipynb is empty"),
    (["nbgrader", "validate", "notes.txt"], 2, "notes.txt is not a readable notebook"),
    (["nbgrader", "validate"], 2, "nbgrader validate needs a notebook path"),
    (["data", "--bogus"], 2, "unrecognized arguments: --bogus (see `llmprep data --help`)"),
]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.ipynb").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a notebook")
    (tmp_path / "binary.ipynb").write_bytes(bytes(range(256)) * 4)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), str(tmp_path / "plain.ipynb"))
    return tmp_path


@pytest.mark.parametrize("argv,code,message", BAD_INPUTS, ids=[" ".join(a) or "(none)" for a, _, _ in BAD_INPUTS])
def test_bad_input_is_one_line_on_stderr(argv, code, message, files, root, capsys, monkeypatch):
    monkeypatch.chdir(files)
    results = root / "build" / "results.jsonl"
    before = results.stat().st_mtime_ns if results.exists() else None
    try:
        got = cli.main([a.format(tmp=files) for a in argv])
    except SystemExit as exc:  # argparse's own exits
        got = exc.code
    out, err = capsys.readouterr()
    assert got == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err
    assert (results.stat().st_mtime_ns if results.exists() else None) == before  # nothing was run or erased


def test_chapters_by_id_number_or_folder(root):
    assert course.resolve_chapters(["ch01_training", "ch02", "course/ch03_finetuning/", "solutions/ch01_training"],
                                   root) == ["ch01_training", "ch02_imbalance", "ch03_finetuning"]
    assert course.resolve_chapters(None, root) == course.chapters(root)


def test_run_rejects_before_erasing_and_keeps_other_chapters_results(tmp_path):
    results = tmp_path / "build" / "results.jsonl"
    results.parent.mkdir()
    old = [{"chapter": "ch01_a", "name": "old 1", "value": "1", "anchor": ""},
           {"chapter": "ch02_b", "name": "old 2", "value": "2", "anchor": ""}]
    results.write_text("".join(json.dumps(r) + "\n" for r in old))
    (tmp_path / "solutions" / "ch01_a").mkdir(parents=True)
    (tmp_path / "solutions" / "ch02_b").mkdir(parents=True)
    with pytest.raises(course.UsageError, match="unknown chapter 'nope'"):
        headless.run(["nope"], root=tmp_path)
    with pytest.raises(course.UsageError, match="no notebooks to run"):
        headless.run(["ch01_a"], root=tmp_path)  # a chapter without notebooks: a no-op is refused
    assert results.read_text() == "".join(json.dumps(r) + "\n" for r in old)
    new = [{"chapter": "ch02_b", "name": "new 2", "value": "3", "anchor": ""}]
    merge_results(results, new, ["ch02_b"], ["ch01_a", "ch02_b"])
    assert [r["name"] for r in map(json.loads, results.read_text().splitlines())] == ["old 1", "new 2"]


COMMANDS = ["data", "run", "start", "release", "check", "grade", "book"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_description_example_and_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: llmprep {command}" in text and "example:" in text and "exit codes:" in text
    assert "2  " in text  # the usage-error code is documented


def test_version_and_top_level_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    from llmprep import __version__

    assert capsys.readouterr().out.strip() == f"llmprep {__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in COMMANDS + ["lab", "nbgrader", "bench"])


@pytest.mark.parametrize("argv", [["lab", "--help"], ["nbgrader", "--help"], ["nbgrader", "validate", "--help"]])
def test_help_of_wrapped_tools_is_the_tools_own(argv, monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "cmd_lab", lambda args: seen.setdefault("extra", args.extra) and 0)
    monkeypatch.setattr(cli, "cmd_nbgrader", lambda args: seen.setdefault("extra", args.extra) and 0)
    parser = cli.build_parser()
    args, extra = parser.parse_known_args(argv)
    assert args.passthrough and extra == argv[1:]  # handed to jupyter lab / nbgrader untouched


def test_lab_runs_as_root_and_opens_the_workspace(tmp_path):
    cmd, env = cli.lab_command([], tmp_path, uid=0)
    assert "--allow-root" in cmd and f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--LabApp.default_url=/lab/tree/course" in cmd  # nothing started yet
    assert env["JUPYTER_CONFIG_PATH"].endswith("autograder")
    spec = json.loads((tmp_path / "build" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert "--InteractiveShellApp.extensions=llmprep.jupyter" in spec["argv"]
    assert spec["display_name"] == course.KERNELSPEC["display_name"]
    (tmp_path / "work" / "ch01_training").mkdir(parents=True)
    cmd, _ = cli.lab_command(["--no-browser"], tmp_path, uid=1000)
    assert "--allow-root" not in cmd and cmd[-1] == "--no-browser" and "--LabApp.default_url=/lab/tree/work" in cmd


def test_start_copies_a_chapter_and_never_overwrites(root, tmp_path, capsys):
    dest = tmp_path / "mine"
    assert cli.main(["start", "ch01", str(dest)]) == 0
    released = sorted(p.name for p in (root / "course" / "ch01_training").glob("*.ipynb"))
    assert sorted(p.name for p in dest.glob("*.ipynb")) == released
    assert "llmprep lab" in capsys.readouterr().out
    (dest / "ch01_exercises.ipynb").write_text("my work")
    assert cli.main(["start", "ch01_training", str(dest)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (dest / "ch01_exercises.ipynb").read_text() == "my work"


def test_nbgrader_paths_are_relative_to_the_users_folder(root, tmp_path, monkeypatch):
    nb = tmp_path / "sub" / "mine.ipynb"
    nb.parent.mkdir()
    nb.write_bytes((root / "course" / "ch01_training" / "ch01_exercises.ipynb").read_bytes())
    monkeypatch.chdir(tmp_path)
    cli.nbgrader_paths(["validate", "sub/mine.ipynb"], tmp_path)  # found: no error
    cli.nbgrader_paths(["validate", "sub/*.ipynb"], tmp_path)
    with pytest.raises(cli.UsageFailure, match="relative to"):
        cli.nbgrader_paths(["validate", "mine.ipynb"], tmp_path / "elsewhere")
    cli.nbgrader_paths(["release_assignment", "ch01_training"], tmp_path)  # not a path command


def test_nbgrader_tracebacks_become_one_line():
    stderr = """[ValidateApp | INFO] Validating '/tmp/x.ipynb'
[ValidateApp | ERROR] Traceback (most recent call last):
      File "/venv/nbformat/reader.py", line 19, in parse_json
        nb_dict = json.loads(s, **kwargs)
    json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)

    The above exception was the direct cause of the following exception:

    Traceback (most recent call last):
      File "/venv/nbformat/reader.py", line 25, in parse_json
        raise NotJSONError(message) from e
    nbformat.reader.NotJSONError: Notebook does not appear to be JSON: ''

[ValidateApp | ERROR] nbgrader encountered a fatal error while trying to validate '/tmp/x.ipynb'
Traceback (most recent call last):
  File "x.py", line 1, in <module>
KeyError: 'boom'
"""
    out = io.StringIO()
    cli.filter_tracebacks(io.StringIO(stderr), out)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[ValidateApp | INFO] Validating '/tmp/x.ipynb'",
        "[ValidateApp | ERROR] nbformat.reader.NotJSONError: Notebook does not appear to be JSON: '' "
        "(LLMPREP_DEBUG=1 shows the traceback)",
        "[ValidateApp | ERROR] nbgrader encountered a fatal error while trying to validate '/tmp/x.ipynb'",
        "KeyError: 'boom' (LLMPREP_DEBUG=1 shows the traceback)",
    ]


def test_llmprep_check_magic_shows_each_verdict(tmp_path, monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from llmprep import jupyter

    nb = tmp_path / "mine.ipynb"
    nb.write_text("{}")
    calls = []
    result = {"notebook": "mine.ipynb", "chapter": "ch01_training", "score": 2, "max_score": 5, "notes": ["graded <b>"],
              "sandbox": "bubblewrap", "cells": [
                  {"grade_id": "ch01_a_test", "points": 2, "max_points": 2, "message": "correct"},
                  {"grade_id": "ch01_b_test", "points": 0, "max_points": 3, "message": "<script>x</script> differs"}]}
    monkeypatch.setattr(jupyter, "run_check", lambda path: calls.append(str(path)) or (0, result, ""))
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, raw=False: shown.append(obj))
    ip = InteractiveShell.instance()
    try:
        jupyter.load_ipython_extension(ip)
        ip.user_ns["__session__"] = str(nb)  # what ipykernel sets from the Jupyter session
        ip.run_line_magic("llmprep_check", "")
    finally:
        InteractiveShell.clear_instance()
    assert calls == [str(nb)]
    text, html = shown[0]["text/plain"], shown[0]["text/html"]
    assert "2 / 5 points" in text and "FAIL  ch01_b_test" in text and "save (Ctrl+S)" in text
    assert "&lt;script&gt;" in html and "<script>" not in html and "white-space:pre-wrap" in html


def test_pre_save_hook_drops_only_the_python_version():
    info = dict(course.LANGUAGE_INFO, version="3.12.1")
    model = {"type": "notebook", "content": {"metadata": {"language_info": info}}}
    from llmprep.jupyter import pre_save

    pre_save(model=model, path="x.ipynb")
    assert model["content"]["metadata"]["language_info"] == course.LANGUAGE_INFO
    other = {"type": "notebook", "content": {"metadata": {"language_info": {"name": "julia", "version": "1.10"}}}}
    pre_save(model=other, path="y.ipynb")
    assert other["content"]["metadata"]["language_info"]["version"] == "1.10"


def test_released_notebooks_store_the_installed_kernels_metadata(root):
    from jupyter_client.kernelspec import KernelSpecManager

    installed = KernelSpecManager().get_kernel_spec("python3")
    assert course.KERNELSPEC == {"name": "python3", "display_name": installed.display_name, "language": installed.language}
    from ipykernel.ipkernel import IPythonKernel

    reported = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    assert course.LANGUAGE_INFO == reported
    for path in sorted((root / "course").glob("*/*.ipynb")):
        meta = json.loads(path.read_text())["metadata"]
        assert meta["kernelspec"] == course.KERNELSPEC and meta["language_info"] == course.LANGUAGE_INFO, path
    assert os.path.isfile(root / "autograder" / "jupyter_server_config.py")


# --------------------------------------------------------------------------- issue 27 item 9: CLI nits

def test_bench_help_has_description_example_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "usage: llmprep bench" in text and "example:" in text and "exit codes:" in text
    assert "results table" in text and "llmprep bench ch09" in text


def test_bench_forwards_its_chapters_and_refuses_unknown_ones(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert cli.main(["bench", "ch09", "--grading", "3"]) == 0
    assert calls[0][-3:] == ["ch09_transformer", "--grading", "3"]
    assert cli.main(["bench", "ch99"]) == 2 and "unknown chapter 'ch99'" in capsys.readouterr().err
    assert len(calls) == 1


def test_unknown_nbgrader_command_exits_non_zero(capsys, monkeypatch):
    monkeypatch.setattr(cli.subprocess, "Popen", lambda *a, **k: pytest.fail("nbgrader was started"))
    assert cli.main(["nbgrader", "frobnicate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown nbgrader command 'frobnicate'") and "collect" in err and len(err.splitlines()) == 1


def test_data_check_labels_a_corrupted_asset_corrupted_not_missing(tmp_path, monkeypatch, capsys):
    import shutil

    from llmprep import assets

    cache = tmp_path / "cache"
    shutil.copytree(assets.verify("gpt2_tokenizer"), cache / "assets" / "gpt2_tokenizer")
    monkeypatch.setenv("LLMPREP_CACHE", str(cache))
    merges = cache / "assets" / "gpt2_tokenizer" / "merges.txt"
    data = bytearray(merges.read_bytes())
    data[100] ^= 0x01
    merges.write_bytes(bytes(data))
    assert cli.main(["data", "--check"]) == 1
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if len(line.split()) > 1}
    assert lines["gpt2_tokenizer"].startswith("CORRUPTED ") and "checksum differs" in lines["gpt2_tokenizer"]
    others = [line for name, line in lines.items() if name in assets.ASSETS and name != "gpt2_tokenizer"]
    assert others and all(line.startswith("MISSING ") for line in others)  # not in this cache at all


def test_grade_with_nothing_collected_says_to_collect_first(tmp_path, capsys):
    from llmprep.grading.batch import grade_assignment

    assert grade_assignment("ch01_training", root=tmp_path, unsandboxed=True) == 1
    err = capsys.readouterr().err
    assert "nothing collected yet" in err and "run `llmprep nbgrader collect ch01_training` first" in err
