"""Environment defaults, seeding and device selection shared by every chapter.

The course is offline by default: ``HF_HUB_OFFLINE=1`` unless the user opts in
to online sources with ``LLMPREP_ONLINE=1``.
"""
from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ONLINE_ENV = "LLMPREP_ONLINE"


def online_enabled() -> bool:
    """True when the user opted in to downloading from canonical online sources."""
    return os.environ.get(ONLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def apply_env_defaults() -> None:
    """Set the environment defaults the course relies on (never overrides a user's choice)."""
    if not online_enabled():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # OpenMP threads that spin while waiting slow small-op training loops 5-10x on a busy 2-core
    # machine (measured in ch01); passive waiting costs nothing when the cores are idle.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # JAX: keep it from grabbing all GPU memory when it shares a machine with torch.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


_TORCH_DEFAULT_THREADS: int | None = None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n``; with ``None``, to ``LLMPREP_THREADS`` or ``OMP_NUM_THREADS``
    if set, else torch's own default (one per core), even after an earlier call lowered it."""
    global _TORCH_DEFAULT_THREADS
    import torch

    if _TORCH_DEFAULT_THREADS is None:
        _TORCH_DEFAULT_THREADS = torch.get_num_threads()
    if n is None:
        env = os.environ.get("LLMPREP_THREADS") or os.environ.get("OMP_NUM_THREADS")
        n = int(env) if env and env.isdigit() else _TORCH_DEFAULT_THREADS
    n = max(1, int(n))
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for reproducible runs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


DEVICE_ENV = "LLMPREP_DEVICE"
_CHOSEN: str | None = None

# Chapters whose reference notebook computes on the CPU on every machine, with the reason (README "On a GPU
# (CUDA)"; tests/test_device_agnostic.py checks this list against the notebooks): their recorded results say
# ``cpu`` even where setup() chose a GPU.
CPU_CHAPTERS = {
    "ch02": "tiny linear / MLP models on TF-IDF vectors and 8x8 digits, indexed by CPU generators: a GPU would add "
            "launch overhead only, and the figures stay identical everywhere",
    "ch04": "retrieval: BM25 and frozen MiniLM embeddings of 300 passages, no training; not moved to the GPU yet",
    "ch05": "the CPU is the deployment target whose latency the chapter measures",
    "ch08": "tiny digits models (pruning, distillation, FedAvg, DP-SGD) and int8 MiniLM; not moved to the GPU yet",
    "ch09": "the from-scratch Llama checked against LlamaForCausalLM in float32 and the CPU timing of SDPA vs naive "
            "attention; not moved to the GPU yet",
    "ch10": "tokenizers: no tensors to place",
    "ch11": "SmolLM2 + LoRA DPO compared step by step with TRL's trainer, which is kept on the CPU (use_cpu=True)",
    "ch12": "inference figures measured against this CPU's roofline (GFLOP/s, memory bandwidth)",
    "ch13": "torch.distributed on gloo: CPU processes by design (the collectives, not NCCL)",
    "ch14": "retrieval (BM25, frozen MiniLM, faiss-cpu indexes) and a batched SmolLM2-135M reader on one thread; not "
            "moved to the GPU yet",
    "ch18": "a tiny character-level Llama, SmolLM2 streamed through a hand-bounded KV cache and CPU timings of "
            "softmax vs linear attention; not moved to the GPU yet",
    "ch17": "SmolLM2-135M sampled through a hand-written KV-cache loop, greedy budget forcing and two LoRA steps on one "
            "thread; not moved to the GPU yet",
}


def pick_device(prefer: str | None = None):
    """The course's one device choice: ``prefer``, else ``LLMPREP_DEVICE``, else CUDA if present, else CPU.
    Remembered for :func:`chosen_device` (the device every :func:`llmprep.results.record` names)."""
    global _CHOSEN
    import torch

    choice = prefer or os.environ.get(DEVICE_ENV, "").strip()
    device = torch.device(choice) if choice else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _CHOSEN = device.type
    return device


def chosen_device() -> str | None:
    """The device type :func:`pick_device` (or :func:`setup`) last chose in this process, or None."""
    return _CHOSEN


def autocast_dtype(device) -> torch.dtype:
    """The low-precision dtype for mixed precision on this device: bf16 on CPU and
    on CUDA GPUs that support it, else fp16."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def setup(seed: int = 0, threads: int | None = None):
    """One call at the top of a notebook: env defaults, threads, seeds; returns the device."""
    apply_env_defaults()
    set_threads(threads)
    seed_everything(seed)
    return pick_device()


def release_freed_memory() -> None:
    """Hand memory that Python and torch freed back to the OS (glibc keeps freed heap pages resident, so a
    loop that frees tensors of varying shapes grows its resident size step by step). A no-op where the C
    library is not glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
