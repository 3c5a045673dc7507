"""Training checkpoints: ``last.safetensors`` (weights, best weights, optimizer moments,
random states and the loop's counters), written atomically with a checksum over everything
it holds and a signature of the training it belongs to, and read back only when both match,
so a resumed training ends bit-identical to an uninterrupted one and a damaged or foreign
checkpoint is named in one line and trained afresh.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ravlm_bench.api import ConfigError, cause

CHECKPOINT_NAME = "last.safetensors"
CHECKSUM_KEY = "checksum"  # in the safetensors metadata, beside what it covers
METADATA_KEYS = ("signature", "state", "param_groups", "optim_scalars")
RNG_KEYS = ("rng.generator", "rng.torch")
# A temporary file older than this was left by a writer killed mid-write: a write takes
# seconds, so no live writer is still filling it
ORPHAN_AGE_S = 3600.0

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    steps: int = 0
    best_epoch: int = 0
    best_accuracy: float = -math.inf
    best_loss: float = math.inf
    bad_epochs: int = 0
    done: bool = False  # stopped early; reaching the epoch budget is not done: more may follow
    seconds: float = 0.0  # training time over every run that contributed epochs
    history: list[dict] = field(default_factory=list)


class Unusable(Exception):
    """Why a checkpoint cannot be used, as the words that follow its path in a sentence."""


class Checkpoint:
    """``last.safetensors`` in a directory: tensors plus JSON metadata, written atomically.

    The loop writes it at the end of an epoch once ``every_s`` seconds have passed since the
    last write, and always when training ends. The random states it holds are the sampling
    generator's and torch's global one (which dropout draws from). An early-stopped
    training, which cannot continue, keeps only its final weights. The signature (head,
    hyperparameters, seed, data fingerprint, code) guards against resuming someone else's
    run; a finished training is reloaded, not repeated.

    Every write carries a sha256 checksum of every tensor and of the metadata, checked
    before anything in the file is used: a damaged checkpoint (a changed byte, a truncated
    file) would otherwise be reused as a finished training, or fail every rerun. A file that
    fails the check, cannot be read, lacks a tensor, holds a state torch refuses or has no
    checksum at all is reported in one line and overwritten by a fresh training. Each write
    goes to a temporary file of its own, renamed over the checkpoint when complete, so a
    reader never sees half a file and two writers never share one.
    """

    def __init__(self, directory: Path | str, signature: str, every_s: float = 0.0):
        self.path = Path(directory) / CHECKPOINT_NAME
        self.signature = signature
        self.every_s = float(every_s)
        self._last_write = time.monotonic()

    def due(self, finished: bool) -> bool:
        """Write now? Always when training has ended, else once ``every_s`` has passed:
        a write per epoch cost a tenth of the demo suite's training time."""
        return finished or time.monotonic() - self._last_write >= self.every_s

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, model: nn.Module, optimizer, state: TrainState,
             best: dict[str, torch.Tensor] | None, generator: torch.Generator) -> None:
        tensors, metadata = _contents(model, optimizer, state, best, generator,
                                      self.signature)
        metadata[CHECKSUM_KEY] = checksum(tensors, metadata)
        self._write(tensors, metadata)
        self._last_write = time.monotonic()

    def resume(self, model: nn.Module, optimizer, generator: torch.Generator):
        """:meth:`load` when this training has a usable checkpoint, else None. A checkpoint
        of another training (its data, parameters, seed or code changed since), a damaged
        one and one that cannot be verified are reported in one line, and the new training
        overwrites it."""
        self._remove_orphans()
        if not self.exists():
            return None
        try:
            return self._restore(model, optimizer, generator)
        except Unusable as exc:
            log.warning("checkpoint %s %s; training afresh", self.path, exc)
            return None

    def load(self, model: nn.Module, optimizer, generator: torch.Generator):
        """Restore everything :meth:`save` wrote; returns (state, best weights or None).
        A checkpoint that cannot be used raises a ConfigError saying why, and leaves the
        model, optimizer and random states as they were."""
        try:
            return self._restore(model, optimizer, generator)
        except Unusable as exc:
            raise ConfigError(f"checkpoint {self.path} {exc}; delete it or give this run "
                              f"another checkpoint directory") from None

    def _restore(self, model: nn.Module, optimizer, generator: torch.Generator):
        tensors, metadata = self._read_verified()
        if metadata.get("signature") != self.signature:
            raise Unusable("was written by a different head configuration, data, seed or code")
        missing = ([key for key in METADATA_KEYS if key not in metadata]
                   + sorted(_required_tensors(model) - tensors.keys()))
        if missing:
            raise Unusable(f"is damaged: it lacks {', '.join(missing)}")
        undo = _snapshot(model, optimizer, generator, cuda="rng.cuda" in tensors)
        try:
            return _apply(tensors, metadata, model, optimizer, generator)
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
            undo()  # a training started afresh must start exactly where a fresh one does
            raise Unusable(f"is damaged: torch refused its state ({cause(exc)})") from exc

    def _read_verified(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The file's tensors and metadata (less the checksum), once they match it."""
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as exc:  # safetensors raises its own error type for a damaged file
            raise Unusable(f"is unreadable ({cause(exc)})") from exc
        stored = metadata.pop(CHECKSUM_KEY, None)
        if stored is None:
            raise Unusable("has no checksum (it was written before checkpoints carried one), "
                           "so it cannot be verified")
        if checksum(tensors, metadata) != stored:
            raise Unusable("is damaged: its content does not match its checksum")
        return tensors, metadata

    def _write(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{CHECKPOINT_NAME}.",
                                        suffix=".tmp")
        os.close(handle)  # safetensors writes by name
        tmp = Path(name)
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _remove_orphans(self) -> None:
        """Delete the temporary files of writers killed mid-write: each has a name of its
        own, so no later write replaces it."""
        cutoff = time.time() - ORPHAN_AGE_S
        for tmp in self.path.parent.glob(f".{CHECKPOINT_NAME}.*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:  # another rank removed it first
                pass


def checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """sha256 of every tensor (name, dtype, shape, then its bytes, in name order) and of the
    metadata: any change to what the file holds changes it."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key]
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        # the tensor's own memory as bytes: hashing a copy would double the cost
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    digest.update(json.dumps(metadata, sort_keys=True).encode())
    return f"sha256:{digest.hexdigest()}"


def _contents(model: nn.Module, optimizer, state: TrainState,
              best: dict[str, torch.Tensor] | None, generator: torch.Generator,
              signature: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a checkpoint, on the CPU."""
    # An early-stopped training can never continue: it keeps only the weights it ends
    # with (its best), a quarter of a full checkpoint, for --force to reload.
    final = state.done
    weights = best if final and best is not None else model.state_dict()
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    for k, v in ({} if final else best or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous().clone()
    optim = optimizer.state_dict()
    scalars: dict[str, float] = {}
    for pid, pstate in ({} if final else optim["state"]).items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            elif value is not None:
                scalars[f"{pid}.{key}"] = value
    tensors["rng.generator"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and next(model.parameters()).is_cuda:
        tensors["rng.cuda"] = torch.cuda.get_rng_state()  # dropout on the GPU draws here
    metadata = {
        "signature": signature,
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(optim["param_groups"]),
        "optim_scalars": json.dumps(scalars),
    }
    return tensors, metadata


def _required_tensors(model: nn.Module) -> set[str]:
    """What every checkpoint of this model holds, whatever stage it was written at."""
    return {f"model.{k}" for k in model.state_dict()} | set(RNG_KEYS)


def _snapshot(model: nn.Module, optimizer, generator: torch.Generator,
              cuda: bool) -> Callable[[], None]:
    """A function that puts back everything restoring a checkpoint changes."""
    # on the CPU: a GPU that holds the model may have no room for a second copy of it
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    optim = copy.deepcopy(optimizer.state_dict())
    generator_state, torch_state = generator.get_state(), torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state() if cuda and torch.cuda.is_available() else None

    def undo() -> None:
        model.load_state_dict(weights)
        optimizer.load_state_dict(optim)
        generator.set_state(generator_state)
        torch.set_rng_state(torch_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state)

    return undo


def _apply(tensors: dict[str, torch.Tensor], metadata: dict[str, str], model: nn.Module,
           optimizer, generator: torch.Generator):
    """Load a verified checkpoint into the model, optimizer and random states; returns
    (state, best weights or None)."""
    state = TrainState(**json.loads(metadata["state"]))
    device = next(model.parameters()).device
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
    optimizer.load_state_dict(_optimizer_state(tensors, metadata, optimizer, device))
    generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return state, best


def _optimizer_state(tensors: dict[str, torch.Tensor], metadata: dict[str, str], optimizer,
                     device: torch.device) -> dict:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optim_state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            param = params[int(pid)]
            if value.shape == param.shape:
                # in the parameter's memory format (channels-last convolutions): the fused
                # Adam kernel walks the moments in the parameter's memory order
                value = torch.empty_like(param, dtype=value.dtype).copy_(value)
            optim_state.setdefault(int(pid), {})[name] = value.to(device)
    for key, value in json.loads(metadata["optim_scalars"]).items():
        pid, name = key.split(".", 1)
        optim_state.setdefault(int(pid), {})[name] = value
    return {"state": optim_state, "param_groups": json.loads(metadata["param_groups"])}
