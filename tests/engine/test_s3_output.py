"""`spec.output = s3://bucket/prefix`: rank 0 uploads to a real S3 server (SeaweedFS), at the key
the dispatcher looks for, with the endpoint and credentials a Kubernetes pod gets."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from tests.engine.conftest import OneRankRun, make_spec, run_engine, write_spec
from tests.fixtures.seaweedfs import S3Server
from wanserve.artifacts import keys
from wanserve.artifacts.s3 import S3Artifacts
from wanserve.backends.kubernetes.config import JobRequest, RenderConfig
from wanserve.backends.kubernetes.render import pod_env
from wanserve.domain.events import ExitCode
from wanserve.domain.spec import VideoSpec
from wanserve.settings import Settings


def _spec(checkpoint: Path) -> VideoSpec:
    """The tiny spec with no output: the kubernetes backend fills it in."""
    return VideoSpec.model_validate({**make_spec(checkpoint, Path()), "output": None})


def _pod_env(spec: VideoSpec, s3: S3Server, bucket: str) -> dict[str, str]:
    """The env the kubernetes backend renders for an S3 artifact store, plus the Secret's keys."""
    settings = Settings(
        artifacts={"url": f"s3://{bucket}/store", "s3_endpoint_url": s3.endpoint_url}
    )
    job = JobRequest(task_id="task-1", attempt=1, spec=spec, timeout_s=600)
    env = {e["name"]: e["value"] for e in pod_env(job, RenderConfig.from_settings(settings))}
    env["AWS_ACCESS_KEY_ID"] = s3.access_key_id  # envFrom the artifacts Secret
    env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key
    return env


def test_s3_output_uploads_where_the_dispatcher_looks(
    tiny_a14b: Path,
    tmp_path: Path,
    s3_server: S3Server,
    s3_bucket: str,
    one_rank_run: OneRankRun,
) -> None:
    spec = _spec(tiny_a14b)
    env = _pod_env(spec, s3_server, s3_bucket)
    assert "AWS_ENDPOINT_URL" in env  # the endpoint reaches the engine only through the env
    path = tmp_path / "spec.json"
    path.write_text(env["WANSERVE_SPEC"])
    done = run_engine(["-m", "wanserve.engine", "run", "--spec", str(path)], env=env, cwd=tmp_path)

    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    phases = [e.phase.value for e in done.of_type("phase")]
    assert phases[-2:] == ["encoding_video", "uploading"] and "writing" not in phases
    (result,) = done.of_type("result")
    prefix = f"s3://{s3_bucket}/store/tasks/task-1"
    assert (result.path, result.poster) == (f"{prefix}/video.mp4", f"{prefix}/poster.jpg")
    # The same video as the local run, byte for byte, under the dispatcher's keys.
    assert result.sha256 == one_rank_run.done.of_type("result")[0].sha256
    store = S3Artifacts(s3_server.client(), s3_bucket, "store")
    video = s3_server.client().get_object(Bucket=s3_bucket, Key="store/tasks/task-1/video.mp4")
    assert video["ContentType"] == "video/mp4"
    assert hashlib.sha256(video["Body"].read()).hexdigest() == result.sha256
    assert asyncio.run(store.exists(keys.poster_key("task-1")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]  # nothing written locally


def test_s3_upload_failure_fails_the_run_and_leaves_no_temp_files(
    tiny_a14b: Path, tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    spec = _spec(tiny_a14b)
    env = _pod_env(spec, s3_server, s3_bucket)
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env["TMPDIR"] = str(scratch)
    path = tmp_path / "spec.json"
    path.write_text(env["WANSERVE_SPEC"])
    done = run_engine(["-m", "wanserve.engine", "run", "--spec", str(path)], env=env)

    assert done.returncode == ExitCode.FAILED
    (error,) = done.of_type("error")
    assert "SignatureDoesNotMatch" in error.message or "403" in error.message, error.message
    assert [e.phase.value for e in done.of_type("phase")][-1] == "uploading"
    assert not done.of_type("result")
    assert [p for p in scratch.iterdir() if p.name.startswith("wanserve-output-")] == []


def test_an_s3_output_without_a_bucket_is_invalid(tiny_a14b: Path, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "s.json", {**make_spec(tiny_a14b, tmp_path), "output": "s3:///x"})
    done = run_engine(["-m", "wanserve.engine", "run", "--spec", str(spec)])
    assert done.returncode == ExitCode.INVALID
    (error,) = done.of_type("error")
    assert "output" in error.message and "s3:///x" in error.message, error.message
