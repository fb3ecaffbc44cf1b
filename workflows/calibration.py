"""Calibration: A/A load runs of an unchanged target, then the noise they show and what it calls for."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.capacity import auto_rate, capacity_shape
    from ratchet.analysis.load_shapes import ShapeRun, load_request
    from ratchet.config.common import Role
    from ratchet.contracts import CalibrateRequest, CalibrationInput, CalibrationResult, LoadTestResult

from workflows.catalogue import CALIBRATE_NOISE, RUN_LOAD_TEST, call


@workflow.defn(name="CalibrationWorkflow")
class CalibrationWorkflow:
    """``runs`` identical load runs of the target (the playbook's load, at validation's run length), back to
    back; nothing is changed. Then the perf-optimizer measures their run-to-run noise."""

    @workflow.run
    async def run(self, request: CalibrationInput) -> CalibrationResult:
        load = request.playbook.load
        if load.rate == "auto":  # calibrate at the rate a campaign would run at
            load = load.with_rate(await self._sustained_rate(request))
        duration = (request.playbook.validation.run_duration or load.duration).total_seconds()
        warmup = load.warmup.total_seconds()
        run_ids: list[str] = []
        for number in range(1, request.runs + 1):
            shape = ShapeRun(f"calibrate-{number}", load.rps, duration, warmup)
            result: LoadTestResult = await call(
                RUN_LOAD_TEST,
                load_request(request.calibration_id, shape.label, request.target, load, shape),
                prefix=request.task_queue_prefix,
                role=Role.TEST_ENGINEER,
                summary=f"A/A run {number} of {request.runs}",
                timeout=timedelta(seconds=duration + warmup + 120),
                shielded=False,
            )
            run_ids.append(result.run_id)
        calibration: CalibrationResult = await call(
            CALIBRATE_NOISE,
            CalibrateRequest(
                calibration_id=request.calibration_id,
                run_ids=run_ids,
                playbook=request.playbook,
                detect=request.detect,
                power=request.power,
            ),
            prefix=request.task_queue_prefix,
            role=Role.PERF_OPTIMIZER,
            summary="Run-to-run noise per endpoint; runs per arm and margin it calls for",
            shielded=False,
        )
        return calibration.model_copy(update={"target": request.target.name, "run_seconds": duration, "rate": load.rps})

    async def _sustained_rate(self, request: CalibrationInput) -> float:
        """The rate `load.rate: auto` chooses: the capacity ramp, as a campaign runs it."""
        load = request.playbook.load
        shape = capacity_shape(load, request.playbook.slo.default.max_error_rate)
        ramp: LoadTestResult = await call(
            RUN_LOAD_TEST,
            load_request(request.calibration_id, shape.label, request.target, load, shape),
            prefix=request.task_queue_prefix,
            role=Role.TEST_ENGINEER,
            summary="Capacity ramp (k6)",
            timeout=timedelta(seconds=shape.duration_s + 120),
            shielded=False,
        )
        assert ramp.stress is not None
        return auto_rate(ramp.stress, load).rate
