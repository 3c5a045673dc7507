"""Training checkpoints: ``last.safetensors``, rewritten atomically as training goes.

It is written at the end of an epoch once ``every_s`` seconds have passed since the last
write, and always when training ends. It holds the weights, the best weights so far, the
optimizer's moments, the random states (the sampling generator and torch's global one, which
dropout draws from) and the loop's counters, so a resumed run ends bit-identical to an
uninterrupted one (an early-stopped training, which cannot continue, keeps only its final
weights). A signature (head, hyperparameters, seed, data fingerprint, code) guards against
resuming someone else's run; a finished training is reloaded, not repeated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ravlm_bench.api import ConfigError, cause

CHECKPOINT_NAME = "last.safetensors"

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


class Checkpoint:
    """``last.safetensors`` in a directory: tensors plus JSON metadata, written atomically."""

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
        from safetensors.torch import save_file

        # An early-stopped training can never continue: it keeps only the weights it ends
        # with (its best), a quarter of a full checkpoint, for --force to reload.
        final = state.done
        weights = best if final and best is not None else model.state_dict()
        tensors = {f"model.{k}": v.detach().cpu().contiguous().clone()
                   for k, v in weights.items()}
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
            "signature": self.signature,
            "state": json.dumps(asdict(state)),
            "param_groups": json.dumps(optim["param_groups"]),
            "optim_scalars": json.dumps(scalars),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, self.path)
        self._last_write = time.monotonic()

    def resume(self, model: nn.Module, optimizer, generator: torch.Generator):
        """:meth:`load` when this training has a checkpoint, else None. A checkpoint of
        another training (its data, parameters, seed or code changed since), or one that
        cannot be read, is reported in one line, and the new training overwrites it."""
        from safetensors import safe_open

        if not self.exists():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as handle:
                signature = (handle.metadata() or {}).get("signature")
        except Exception as exc:  # safetensors raises its own error type for a damaged file
            log.warning("checkpoint %s is unreadable (%s); training afresh", self.path,
                        cause(exc))
            return None
        if signature != self.signature:
            log.warning("checkpoint %s is of another training (its data, parameters, seed or "
                        "code have changed); training afresh", self.path)
            return None
        return self.load(model, optimizer, generator)

    def load(self, model: nn.Module, optimizer, generator: torch.Generator):
        """Restore everything :meth:`save` wrote; returns (state, best weights or None)."""
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("signature") != self.signature:
                raise ConfigError(
                    f"checkpoint {self.path} was written by a different head configuration or "
                    f"data; delete it or give this run another checkpoint directory")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        device = next(model.parameters()).device
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")} or None
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
        optimizer.load_state_dict({"state": optim_state,
                                   "param_groups": json.loads(metadata["param_groups"])})
        generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        return TrainState(**json.loads(metadata["state"])), best
