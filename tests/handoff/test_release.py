"""Releases end to end: a producer repo with a real bundle, moto's S3 server on 127.0.0.1 as its DVC remote,
`pipeline release` / `pipeline promote`, and a deployment team that fetches versions and stages from an empty
folder with `dvc artifacts get` and checks them with the bundle's own verify.py."""

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.packaging import bundle as bundle_io
from tests.conftest import run_cli

BIN = Path(sys.executable).parent
ARTIFACT = "bundle-cpu-x86"
ARCHIVE = "artifacts/deploy/cpu_x86.tar.gz"
# moto accepts any credentials; they come from the environment, never from a committed file.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_MAX_ATTEMPTS": "1",
               "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "producer", "GIT_AUTHOR_EMAIL": "producer@localhost",
               "GIT_COMMITTER_NAME": "producer", "GIT_COMMITTER_EMAIL": "producer@localhost"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(tmp_path):
    """moto's S3 server on 127.0.0.1 (stopped by the test's end) with an empty bucket `handoff`."""
    import boto3

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="handoff")
        yield endpoint, client
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _run(argv, cwd, check=True, **env):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **CREDENTIALS, **env})
    assert not check or done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def _dvc(*args, cwd, check=True):
    return _run([str(BIN / "dvc"), *args], cwd, check)


def _pipeline(*args, cwd):
    return run_cli(*args, cwd=cwd, env=CREDENTIALS)


def _producer(tmp_path, bundle: Path, endpoint: str) -> Path:
    """A repository as `make repro` leaves it, reduced to one bundle: the archive DVC-tracked and declared as an
    artifact in dvc.yaml, the remote on the S3 server (its address committed, its credentials not)."""
    repo = tmp_path / "producer"
    deploy = repo / "artifacts" / "deploy"
    shutil.copytree(bundle, deploy / "cpu_x86")
    shutil.copy(bundle.with_suffix(".tar.gz"), deploy / "cpu_x86.tar.gz")
    _run(["git", "init", "-q", "-b", "main"], repo)
    _dvc("init", "-q", cwd=repo)
    (repo / ".gitignore").write_text("/artifacts/deploy/cpu_x86/\n")
    _dvc("add", "-q", ARCHIVE, cwd=repo)
    (repo / "dvc.yaml").write_text(json.dumps({"artifacts": {ARTIFACT: {"path": ARCHIVE, "type": "model"}}}))
    _dvc("remote", "add", "-d", "store", "s3://handoff/store", cwd=repo)
    _dvc("remote", "modify", "store", "endpointurl", endpoint, cwd=repo)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "built"], repo)
    return repo


def _rebuild(repo: Path, edit=None) -> None:
    """A new archive of the bundle folder (its manifest edited by `edit`), committed as `dvc repro` would."""
    folder, archive = repo / "artifacts" / "deploy" / "cpu_x86", repo / ARCHIVE
    if edit is not None:
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        bundle_io.write_tarball(folder, archive)
    else:  # the same files, other bytes: recompressed
        archive.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1, mtime=0))
    _dvc("add", "-q", ARCHIVE, cwd=repo)
    _run(["git", "commit", "-qam", "rebuilt"], repo)


def _get(consumer: Path, repo: Path, out: str, *selector: str) -> Path:
    """What a deployment team runs, in a folder that holds nothing of the pipeline."""
    _dvc("artifacts", "get", f"file://{repo}", ARTIFACT, *selector, "-o", out, "--force", cwd=consumer)
    return consumer / out


def _verify_as_team(consumer: Path, repo: Path, archive: Path, version: str) -> subprocess.CompletedProcess:
    """The published sha256 comes from the registry (release.json at the version's tag, from git, not the
    store); the checker is the bundle's own."""
    _dvc("get", f"file://{repo}", "release.json", "--rev", f"{ARTIFACT}@{version}", "-o", "release.json",
         "--force", cwd=consumer)
    published = json.loads((consumer / "release.json").read_text())["artifacts"][ARTIFACT]["sha256"]
    unpacked = consumer / f"unpacked-{version}"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    return subprocess.run([sys.executable, str(unpacked / "cpu_x86" / "verify.py"), str(archive), "--sha256",
                           published], capture_output=True, text=True)


@pytest.mark.slow
def test_a_release_is_versioned_pushed_fetched_by_version_and_stage_verified_and_rolled_back(
        bundles, mnist_dir, s3, tmp_path):
    endpoint, client = s3
    repo = _producer(tmp_path, bundles["cpu_x86"], endpoint)
    gate = ["--data", str(mnist_dir), "--rounds", "3"]

    first = _pipeline("release", "v0.1.0", "--stage", "prod", *gate, cwd=repo)
    assert first.returncode == 0, first.stderr
    assert "released v0.1.0 (first)" in first.stdout
    tags = _run(["git", "tag"], repo).stdout.split()
    assert {f"{ARTIFACT}@v0.1.0", f"{ARTIFACT}#prod#1"} <= set(tags)
    message = _run(["git", "tag", "-l", "--format=%(contents)", f"{ARTIFACT}@v0.1.0"], repo).stdout
    assert f"sha256 {bundle_io.sha256_file(repo / ARCHIVE)}" in message  # the digest travels with the tag

    same = _pipeline("release", "v0.1.1", *gate, cwd=repo)
    assert same.returncode == 2 and "nothing to release: every artifact has the same bytes as v0.1.0" in same.stderr

    _rebuild(repo)  # same contract, other bytes: a patch
    patch = _pipeline("release", "v0.1.1", "--stage", "prod", *gate, cwd=repo)
    assert patch.returncode == 0, patch.stderr
    record = json.loads((repo / "release.json").read_text())
    assert record["bump"] == "patch" and [c["field"] for c in record["changes"]] == ["sha256"]
    assert set(record["regression"][ARTIFACT]["checks"]) == {"batch-1 latency", "batch-256 throughput", "accuracy"}
    assert record["regression"][ARTIFACT]["failed"] == []

    consumer = tmp_path / "team"
    consumer.mkdir()
    old = _get(consumer, repo, "v0.1.0.tar.gz", "--rev", "v0.1.0")
    new = _get(consumer, repo, "v0.1.1.tar.gz", "--rev", "v0.1.1")
    prod = _get(consumer, repo, "prod.tar.gz", "--stage", "prod")
    assert old.read_bytes() != new.read_bytes() and prod.read_bytes() == new.read_bytes()
    checked = _verify_as_team(consumer, repo, old, "v0.1.0")
    assert checked.returncode == 0 and checked.stdout.startswith("authentic"), checked.stderr
    tampered = _verify_as_team(consumer, repo, new, "v0.1.0")  # v0.1.1's bytes against v0.1.0's digest
    assert tampered.returncode == 2 and "not the archive the producer published" in tampered.stderr

    rollback = _pipeline("promote", "v0.1.0", "--stage", "prod", cwd=repo)
    assert rollback.returncode == 0 and "prod is now v0.1.0" in rollback.stdout
    assert _get(consumer, repo, "prod.tar.gz", "--stage", "prod").read_bytes() == old.read_bytes()

    # A contract change claimed as a patch is refused, naming the field and the version it needs.
    _rebuild(repo, lambda m: m.update(class_labels=m["class_labels"][::-1]))
    small = _pipeline("release", "v0.1.2", *gate, cwd=repo)
    assert small.returncode == 2
    assert "v0.1.2 is a patch release, but bundle-cpu-x86's class_labels changed" in small.stderr
    assert "needs a major release: use v1.0.0" in small.stderr
    # As a major release, the regression gate still stops it: the reversed labels read most digits wrong.
    worse = _pipeline("release", "v1.0.0", *gate, cwd=repo)
    assert worse.returncode == 1 and "regression gate: bundle-cpu-x86: accuracy:" in worse.stderr
    assert "--accept-regression" in worse.stderr and f"{ARTIFACT}@v1.0.0" not in _run(["git", "tag"], repo).stdout
    accepted = _pipeline("release", "v1.0.0", "--accept-regression", "relabelled on purpose", *gate, cwd=repo)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads((repo / "release.json").read_text())["accepted_regression"] == "relabelled on purpose"

    # An object the store lost: the team's fetch fails naming it; the producer's push puts it back.
    objects = [o["Key"] for o in client.list_objects_v2(Bucket="handoff")["Contents"]]
    for key in objects:
        client.delete_object(Bucket="handoff", Key=key)
    lost = _dvc("artifacts", "get", f"file://{repo}", ARTIFACT, "--rev", "v0.1.0", "-o", "lost.tar.gz",
                cwd=consumer, check=False)
    assert lost.returncode != 0 and "lost.tar.gz" not in os.listdir(consumer)
    pushed = _dvc("push", "-q", ARCHIVE, cwd=repo)
    assert pushed.returncode == 0


@pytest.mark.slow
def test_a_release_whose_objects_are_not_all_in_the_store_fails_naming_them(bundles, mnist_dir, s3, tmp_path):
    endpoint, _ = s3
    repo = _producer(tmp_path, bundles["cpu_x86"], endpoint)
    shutil.rmtree(repo / ".dvc" / "cache")  # the archive's object is gone from the cache, and never reached the store
    failed = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--rounds", "3", cwd=repo)
    assert failed.returncode == 2
    assert "the remote lacks what the release needs: artifacts/deploy/cpu_x86.tar.gz" in failed.stderr
    assert f"{ARTIFACT}@v0.1.0" not in _run(["git", "tag"], repo).stdout


@pytest.mark.slow
def test_a_store_that_does_not_answer_is_one_line_naming_the_cause(bundles, mnist_dir, s3, tmp_path):
    endpoint, _ = s3
    repo = _producer(tmp_path, bundles["cpu_x86"], endpoint)
    _dvc("remote", "modify", "store", "endpointurl", f"http://127.0.0.1:{_free_port()}", cwd=repo)
    down = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--rounds", "3", cwd=repo)
    assert down.returncode == 2 and len(down.stderr.strip().splitlines()) == 1
    assert "dvc push failed:" in down.stderr and "Could not connect to the endpoint URL" in down.stderr
