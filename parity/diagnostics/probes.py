"""Layer probes (seed 003): each probe module's tensor on the backend against the framework's own, in forward
order, naming the first that exceeds its tolerance (numpy only; the framework supplies the hooks)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from parity import inputs as inputs_mod
from parity.compare import difference
from parity.errors import ExportError, ParityError, one_line
from parity.results import ProbeEntry, ProbeReport

PREFIX = "probe/"  # graph output names of probe tensors: probe/<module path>
log = logging.getLogger("parity")


def probe_output_name(path: str) -> str:
    return PREFIX + path


def run_probes(plan: Any, cache: Any, golden_inputs: Mapping[str, np.ndarray], batch: int | None,
               main_candidate: Mapping[str, np.ndarray] | None, failed: bool = False) -> ProbeReport:
    """Probe tensors from the framework's hooks (reference) vs the probed artifact on the backend, at `batch`:
    the first batch size that ran, whose outputs without probes were `main_candidate` (`failed`: they FAILed
    against the golden, so a fault after the last probe is named as such)."""
    if batch is None or main_candidate is None:
        return ProbeReport(batch_size=batch, error="no batch size ran on the backend, so there is nothing to localise")
    feeds = inputs_mod.take(dict(golden_inputs), dict(plan.input_axes), batch)
    try:
        reference = cache.framework.run_probes(cache.model, feeds, plan.input_names, plan.model.probes)
        artifact = cache.get(batch, probed=True)
        if artifact.failure():
            raise ExportError(f"probed artifact: {artifact.failure()}")
        with cache.conversion.backend.prepare(artifact) as session:
            probed = session.infer(feeds)
    except ParityError as exc:
        return ProbeReport(batch_size=batch, error=one_line(exc))
    # the probes must not change the main outputs (extra graph outputs can block fusions): each main output with
    # probes attached must agree with the one without them under its own tolerance
    tolerances = plan.backend_tolerance
    side_stats = {o: difference(main_candidate[o], probed[o], tolerances(o)) for o in plan.output_names}
    side = max((stats["max_abs"] for stats in side_stats.values()), default=0.0)
    side_ok = all(tolerances(o).accepts(stats) for o, stats in side_stats.items())
    entries, previous, first = [], None, None
    for path in reference:  # in the order the modules ran, whatever order the config lists them in
        ref, cand = reference[path], probed[probe_output_name(path)]
        tol = tolerances(path)  # probes may have per_output entries too
        if ref.shape != cand.shape:
            entry = ProbeEntry(path, tuple(ref.shape), None, None, None, None, False,
                               f"shape {list(ref.shape)} vs {list(cand.shape)}")
        else:
            stats = difference(ref, cand, tol)
            amplification = (stats["max_abs"] / previous) if previous else None
            previous = stats["max_abs"] or None
            problems = tol.violations(stats)
            entry = ProbeEntry(path, tuple(ref.shape), stats["max_abs"], stats["mean_abs"], stats["l2_rel"],
                               amplification, not problems, "; ".join(problems))
        entries.append(entry)
        if not entry.within_tolerance and first is None:
            first = path
    after = entries[-1].name if failed and first is None and entries else None
    log.info("probes: first exceeding tolerance: %s", first or (f"none; the error enters after the last probe, "
                                                                 f"{after}" if after else "none"))
    return ProbeReport(batch_size=batch, probes=tuple(entries), first_exceeding=first, side_effect_max_abs=side,
                       side_effect_ok=side_ok, after_last_probe=after)
