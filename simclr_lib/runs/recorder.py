"""What a pre-training run records while it trains, behind ``train.pretrain``'s loop: the health check, progress
bar and TensorBoard at the logging steps, the kNN monitor, history and checkpoint at each epoch's end, and
``config.json`` / ``metrics.json``.

The step loop holds no host sync but the ones here, every ``LOG_EVERY`` steps and at an epoch's last step. A
NaN/inf loss or diverging weights stop the run with one line naming the likely causes; the checkpoint written
before is kept and never replaced by a bad one.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from simclr_lib import __version__
from simclr_lib.config import SimCLRConfig
from simclr_lib.data import ImageData
from simclr_lib.evaluate import evaluate_frozen
from simclr_lib.loss import contrastive_accuracy
from simclr_lib.models import SimCLRModel
from simclr_lib.runs.budget import TimeBudget
from simclr_lib.runs.checkpoint import save_run, write_config
from simclr_lib.runs.state import Run
from simclr_lib.runtime import atomic_write_text

LOG_EVERY = 10  # steps between host syncs for the progress bar, TensorBoard and the health check
MAX_PARAM_NORM = 1e8  # a weight norm above this is divergence, even while the loss stays finite


def param_norm(model: torch.nn.Module) -> torch.Tensor:
    """The L2 norm of all parameters together, on the device (no sync). Shape: -> ()."""
    norms = torch._foreach_norm([p.detach() for p in model.parameters()])
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def knn_monitor(model: SimCLRModel, monitor: tuple[ImageData, ImageData], cfg: SimCLRConfig) -> float:
    """kNN top-1 (cosine, k = cfg.knn_k) of the frozen features h on the monitor's test images."""
    return evaluate_frozen(model, *monitor, scores=("knn",), knn_k=cfg.knn_k)["knn_h"]


def diverged(run: Run, what: str, epoch: int, kept: Optional[Path]) -> FloatingPointError:
    """A one-line stop message naming the settings of this run that are likely to blame."""
    cfg = run.cfg
    causes = [f"temperature={cfg.temperature} is low (logits grow as 1/tau; try >= 0.1)"] if cfg.temperature < 0.1 else []
    if cfg.weight_decay > 1e-3:
        causes.append(f"weight_decay={cfg.weight_decay} is high (the paper uses 1e-6 with LARS)")
    if run.dtype is torch.float16:
        causes.append("fp16 overflow (use --precision bf16 or fp32)")
    causes.append(f"the peak learning rate {cfg.peak_lr():.3g} (try half)")
    where = f"the last good checkpoint {kept} was kept" if kept else "no checkpoint was written"
    return FloatingPointError(f"{what} at epoch {epoch + 1}, step {run.step}: training stopped and {where}; "
                              f"likely causes: {'; '.join(causes)}")


def _open_writer(run: Run, resumed: bool):
    """config.json and the TensorBoard writer (main process only); returns the writer or None."""
    if not run.main:
        return None
    write_config(run, resumed)
    if not run.cfg.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    # a resumed run drops the events a dead run wrote after its checkpoint: every step after run.step (the
    # checkpoint's own last logged step stays; purge_step=run.step would drop it too)
    return SummaryWriter(str(run.cfg.out_dir), purge_step=run.step + 1 if resumed else None)


class Recorder:
    """``with Recorder(run, resumed, kept) as rec:`` ... ``rec.step(loss, z_all)`` after every optimiser step,
    ``rec.end_epoch()`` after every epoch, ``rec.finish()`` at the end.

    Args:
        run: the run being trained (its ``step`` and ``history`` are advanced here).
        resumed: the run continues from a checkpoint (config.json and TensorBoard are kept, not restarted).
        kept: the checkpoint the run started from, if any (the one a divergence keeps).
    """

    def __init__(self, run: Run, resumed: bool = False, kept: Optional[Path] = None) -> None:
        self.run, self.kept = run, kept
        self.writer = _open_writer(run, resumed)
        self.budget: Optional[TimeBudget] = getattr(run.scheduler, "budget", None)  # a run with cfg.minutes
        if self.budget is not None:
            self.budget.start(run.step)
        total = self.budget.planned if self.budget else run.cfg.epochs * run.steps_per_epoch
        self.bar = tqdm(total=total, initial=run.step, desc="pretrain", unit="step",
                        disable=not (run.cfg.progress and run.main), dynamic_ncols=True)
        self.epoch, self.steps, self.t0 = run.start_epoch, 0, time.perf_counter()
        self.loss_sum = torch.zeros((), device=run.device)
        self.z_all: Optional[torch.Tensor] = None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()

    @property
    def done(self) -> bool:
        """A budgeted run has made its planned steps (its time is used, its cosine complete); never otherwise."""
        return self.budget is not None and self.budget.done(self.run.step)

    def start_epoch(self, epoch: int) -> None:
        """Reset the epoch's loss sum and clock."""
        self.epoch, self.steps, self.t0 = epoch, 0, time.perf_counter()
        self.loss_sum = torch.zeros((), device=self.run.device)
        if self.budget is not None:
            self.budget.epoch_started(self.run.step)

    def step(self, loss: torch.Tensor, z_all: torch.Tensor) -> None:
        """Count one optimiser step; every ``LOG_EVERY`` steps and at the epoch's last one, sync with the host:
        the health check, the progress bar, TensorBoard. Device work only otherwise.

        Shape: loss (), z_all (n_views * batch, out_dim), both detached.
        """
        self.run.step += 1
        self.steps += 1
        self.loss_sum += loss
        self.z_all = z_all
        if self.steps % LOG_EVERY == 0 or self.steps == self.run.steps_per_epoch or self.done:
            self._log(loss)
        self.bar.update(1)

    def _log(self, loss: torch.Tensor) -> None:
        """The logging sync (one ``tolist``): health check of loss and weights, progress bar, TensorBoard."""
        run = self.run
        value, total, norm = torch.stack([loss.float(), self.loss_sum.float(), param_norm(run.core)]).tolist()
        if not math.isfinite(total) or not math.isfinite(norm) or norm > MAX_PARAM_NORM:
            self.bar.close()
            what = f"loss became {value}" if not math.isfinite(total) else f"the weights diverged (norm {norm:.3g})"
            raise diverged(run, what, self.epoch, self.kept)
        if self.budget is not None:  # a budgeted run: its last step re-planned from the measured step time
            self.bar.total = self.budget.replan(run.step)
        lr = run.optimizer.param_groups[0]["lr"]
        self.bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.3g}", epoch=self.epoch + 1)
        if self.writer is not None:
            acc = contrastive_accuracy(self.z_all, run.cfg.n_views)
            for name, v in (("loss", value), ("lr", lr), ("contrastive_top1", acc["top1"]),
                            ("contrastive_top5", acc["top5"])):
                self.writer.add_scalar(f"train/{name}", v, run.step)

    def end_epoch(self) -> dict:
        """The epoch's record (loss, lr, speed, contrastive accuracy, kNN monitor when due), added to the history
        and TensorBoard; the checkpoint when due. Returns the record."""
        run, cfg = self.run, self.run.cfg
        if self.budget is not None:
            self.budget.epoch_ended()
        seconds = time.perf_counter() - self.t0
        record = dict(epoch=self.epoch + 1, step=run.step, loss=(self.loss_sum / max(1, self.steps)).item(),
                      lr=run.optimizer.param_groups[0]["lr"], seconds=seconds,
                      views_per_s=self.steps * cfg.batch_size * cfg.n_views / seconds)
        record.update({f"contrastive_{k}": v for k, v in contrastive_accuracy(self.z_all, cfg.n_views).items()})
        if self.budget is not None:
            record["planned_steps"] = self.budget.planned
        last = record["epoch"] == cfg.epochs or self.done
        if run.monitor is not None and run.main and (record["epoch"] % cfg.knn_every == 0 or last):
            record["knn_top1"] = knn_monitor(run.core, run.monitor, cfg)
        run.history.append(record)
        if self.writer is not None:
            for k in ("views_per_s", "knn_top1"):
                if k in record:
                    self.writer.add_scalar(f"train/{k}", record[k], run.step)
            self.writer.flush()
        if record["epoch"] % cfg.checkpoint_every == 0 or last:
            self.checkpoint(record["epoch"])
        return record

    def checkpoint(self, epoch: int) -> None:
        """Write the checkpoint of ``epoch`` (done epochs); never over a good one with diverged weights."""
        norm = param_norm(self.run.core).item()
        if not math.isfinite(norm) or norm > MAX_PARAM_NORM:
            raise diverged(self.run, f"the weights diverged (norm {norm:.3g})", epoch - 1, self.kept)
        self.kept = save_run(self.run, epoch)

    def stop(self, record: dict) -> None:
        """A callback stopped the run after ``record``'s epoch: checkpoint it unless that was just done."""
        cfg = self.run.cfg
        if record["epoch"] % cfg.checkpoint_every and record["epoch"] != cfg.epochs and not self.done:
            self.checkpoint(record["epoch"])

    def finish(self) -> dict:
        """metrics.json (main process): the last epoch's record, totals, the whole history (and a budgeted run's
        re-plans). Returns the metrics."""
        run, history = self.run, self.run.history
        final = history[-1] if history else {}
        metrics = dict(final, epochs_run=len(history), total_seconds=sum(r["seconds"] for r in history),
                       device=str(run.device), world_size=run.world_size, version=__version__, seed=run.cfg.seed)
        if self.budget is not None:
            metrics["budget"] = self.budget.summary(run.step)
        if run.main:
            out = dict(metrics=metrics, history=history, **({"replans": self.budget.log} if self.budget else {}))
            atomic_write_text(json.dumps(out, indent=2), run.paths.metrics)
        return metrics
