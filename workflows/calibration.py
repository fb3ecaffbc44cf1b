"""Calibration: A/A load runs of an unchanged target, then the noise they show and what it calls for."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Role
    from ratchet.contracts import CalibrateRequest, CalibrationInput, CalibrationResult, LoadTestRequest, LoadTestResult

_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))


@workflow.defn(name="CalibrationWorkflow")
class CalibrationWorkflow:
    """``runs`` identical load runs of the target (the playbook's load, at validation's run length), back to
    back; nothing is changed. Then the perf-optimizer measures their run-to-run noise."""

    @workflow.run
    async def run(self, request: CalibrationInput) -> CalibrationResult:
        load = request.playbook.load
        duration = (request.playbook.validation.run_duration or load.duration).total_seconds()
        warmup = load.warmup.total_seconds()
        run_ids: list[str] = []
        for number in range(1, request.runs + 1):
            result: LoadTestResult = await workflow.execute_activity(
                "run_load_test",
                LoadTestRequest(
                    campaign_id=request.calibration_id, label=f"calibrate-{number}", target=request.target,
                    rate=load.rate, duration_s=duration, warmup_s=warmup, max_vus=load.max_vus,
                    request_timeout_s=load.request_timeout.total_seconds(),
                ),
                task_queue=f"{request.task_queue_prefix}-{Role.TEST_ENGINEER.value}",
                start_to_close_timeout=timedelta(seconds=duration + warmup + 120),
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=_RETRY,
                result_type=LoadTestResult,
                summary=f"A/A run {number} of {request.runs}",
            )  # fmt: skip
            run_ids.append(result.run_id)
        calibration: CalibrationResult = await workflow.execute_activity(
            "calibrate_noise",
            CalibrateRequest(
                calibration_id=request.calibration_id, run_ids=run_ids, playbook=request.playbook,
                detect=request.detect, power=request.power,
            ),
            task_queue=f"{request.task_queue_prefix}-{Role.PERF_OPTIMIZER.value}",
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=_RETRY,
            result_type=CalibrationResult,
            summary="Run-to-run noise per endpoint; runs per arm and margin it calls for",
        )  # fmt: skip
        return calibration.model_copy(update={"target": request.target.name, "run_seconds": duration})
