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
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.core.io import exclusive
from pipeline.packaging import bundle as bundle_io
from tests.conftest import REPO, run_cli
from tests.documented import documented, documented_shell
from tests.helpers.fault_proxy import FaultProxy

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


def _dvc(*args, cwd, check=True, dvc=BIN / "dvc"):
    return _run([str(dvc), *args], cwd, check)


def _pipeline(*args, cwd, **env):
    return run_cli(*args, cwd=cwd, env={**CREDENTIALS, **env})


@pytest.fixture(scope="session")
def team_dvc() -> Path:
    """A deployment team's tools: a venv holding only dvc (with its S3 support), gto and the runtime (onnxruntime,
    numpy, Pillow), at the versions the producer pins, built once under .cache/ (nothing of the pipeline)."""
    root = REPO / ".cache" / "handoff-team"
    wanted = [line for line in (REPO / "constraints.txt").read_text().splitlines()
              if line.split("==")[0].lower() in ("dvc", "dvc-s3", "gto", "onnxruntime", "numpy", "pillow")]
    stamp = root / ".ready"
    with exclusive(root):  # pytest-xdist's workers share .cache/
        if not (stamp.is_file() and stamp.read_text() == "\n".join(wanted)):
            shutil.rmtree(root, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
            # with uv, as `make` installs the producer's pins (compiled: each dvc call would compile dvc again)
            subprocess.run([str(BIN / "uv"), "pip", "install", "-q", "--compile-bytecode", "--python",
                            str(root / "bin" / "python"),
                            "-c", str(REPO / "constraints.txt"), *wanted], check=True, capture_output=True,
                           timeout=900)
            stamp.write_text("\n".join(wanted))
    return root / "bin" / "dvc"


def _error_lines(done) -> int:
    """How many lines of stderr report an error (the contract table before it is not one): one, naming it."""
    return sum(line.startswith("error:") for line in done.stderr.splitlines()) + done.stderr.count("Traceback")


def _producer(tmp_path, bundles: dict, endpoint: str, targets=("cpu_x86",)) -> Path:
    """A repository as `make repro` leaves it, reduced to a few bundles: each archive DVC-tracked and declared as
    an artifact in dvc.yaml, the remote on the S3 server (its address committed, its credentials not)."""
    repo = tmp_path / "producer"
    deploy = repo / "artifacts" / "deploy"
    declared = {}
    for target in targets:
        shutil.copytree(bundles[target], deploy / target)
        shutil.copy(bundles[target].with_suffix(".tar.gz"), deploy / f"{target}.tar.gz")
        declared[f"bundle-{target.replace('_', '-')}"] = {"path": f"artifacts/deploy/{target}.tar.gz", "type": "model"}
    _run(["git", "init", "-q", "-b", "main"], repo)
    _dvc("init", "-q", cwd=repo)
    (repo / ".gitignore").write_text("".join(f"/artifacts/deploy/{t}/\n" for t in targets))
    _dvc("add", "-q", *(a["path"] for a in declared.values()), cwd=repo)
    (repo / "dvc.yaml").write_text(json.dumps({"artifacts": declared}))
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


# The team's commands as docs/handoff.md shows them (documented_shell holds them to the page).
TEAM = [documented_shell('dvc artifacts get "$REPO" bundle-cpu-x86 --rev v0.1.0'),
        documented_shell('dvc get "$REPO" release/bundle-cpu-x86.sha256 --rev bundle-cpu-x86@v0.1.0'),
        documented_shell("sha256sum -c bundle-cpu-x86.sha256"),
        documented_shell("tar -xzf cpu_x86.tar.gz"),
        documented_shell("python cpu_x86/verify.py cpu_x86.tar.gz --sha256 bundle-cpu-x86.sha256"),
        documented_shell("python cpu_x86/infer.py cpu_x86/digit.png")]
PROD = documented_shell('dvc artifacts get "$REPO" bundle-cpu-x86 --stage prod -o prod.tar.gz --force')


def _as_team(command: list[str], consumer: Path, repo: Path, team_dvc: Path) -> subprocess.CompletedProcess:
    """A documented team command, run as written in a folder holding nothing of the pipeline, with the team's
    venv (dvc, dvc-s3, gto and the runtime) first on PATH."""
    env = {"REPO": f"file://{repo}", "PATH": f"{team_dvc.parent}{os.pathsep}{os.environ['PATH']}"}
    return _run(command, consumer, False, **env)


@pytest.mark.slow
@pytest.mark.longest(minutes=2)
def test_a_release_is_versioned_pushed_fetched_by_version_and_stage_verified_and_rolled_back(
        bundles, mnist_dir, s3, team_dvc, tmp_path):
    endpoint, client = s3
    repo = _producer(tmp_path, bundles, endpoint)
    gate = ["--data", str(mnist_dir), "--per-round", "20"]

    first = _pipeline(*documented("pipeline release v0.1.0 --stage prod")[1:], *gate, cwd=repo)
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
    record = json.loads((repo / "release" / "release.json").read_text())
    assert record["bump"] == "patch" and [c["field"] for c in record["changes"]] == ["sha256"]
    assert set(record["regression"][ARTIFACT]["checks"]) == {"batch-1 latency", "batch-256 throughput", "accuracy"}
    assert record["regression"][ARTIFACT]["failed"] == []

    consumer = tmp_path / "team"
    consumer.mkdir()
    for command in TEAM:
        done = _as_team(command, consumer, repo, team_dvc)
        assert done.returncode == 0, f"{command}: {done.stdout} {done.stderr}"
    assert done.stdout.split("\t")[1] == "7"  # infer.py on the bundle's own sample digit
    verified = _as_team(TEAM[4], consumer, repo, team_dvc).stdout
    assert verified.startswith("authentic") and "the archive is the published one" in verified
    assert _as_team(PROD, consumer, repo, team_dvc).returncode == 0
    old, prod = consumer / "cpu_x86.tar.gz", consumer / "prod.tar.gz"
    assert prod.read_bytes() != old.read_bytes()  # prod is v0.1.1
    shutil.copy(prod, old)  # a store serving other bytes under v0.1.0: caught before anything is unpacked
    assert _as_team(TEAM[2], consumer, repo, team_dvc).returncode == 1
    _dvc("artifacts", "get", f"file://{repo}", ARTIFACT, "--rev", "v0.1.0", "--force", cwd=consumer, dvc=team_dvc)

    rollback = _pipeline(*documented("pipeline promote v0.1.0 --stage prod")[1:], cwd=repo)
    assert rollback.returncode == 0 and "prod is now v0.1.0" in rollback.stdout
    assert _as_team(PROD, consumer, repo, team_dvc).returncode == 0
    assert prod.read_bytes() == old.read_bytes()

    # A contract change claimed as a patch is refused, naming the field and the version it needs.
    _rebuild(repo, lambda m: m.update(class_labels=m["class_labels"][::-1]))
    small = _pipeline("release", "v0.1.2", *gate, cwd=repo)
    assert small.returncode == 2
    assert "v0.1.2 is a patch release, but bundle-cpu-x86's class_labels changed" in small.stderr
    assert "needs a major release: use v1.0.0" in small.stderr
    # As a major release, the regression gate still stops it: the reversed labels read most digits wrong.
    worse = _pipeline("release", "v1.0.0", *gate, cwd=repo)
    assert worse.returncode == 1 and "regression gate failed: bundle-cpu-x86: accuracy:" in worse.stderr
    assert "--accept-regression" in worse.stderr and f"{ARTIFACT}@v1.0.0" not in _run(["git", "tag"], repo).stdout
    accepted = _pipeline("release", "v1.0.0", "--accept-regression", "relabelled on purpose", *gate, cwd=repo)
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads((repo / "release" / "release.json").read_text())["accepted_regression"] == "relabelled on purpose"

    # An object the store lost: the team's fetch fails naming it; the producer's push puts it back.
    objects = [o["Key"] for o in client.list_objects_v2(Bucket="handoff")["Contents"]]
    for key in objects:
        client.delete_object(Bucket="handoff", Key=key)
    lost = _dvc("artifacts", "get", f"file://{repo}", ARTIFACT, "--rev", "v0.1.0", "-o", "lost.tar.gz",
                cwd=consumer, check=False, dvc=team_dvc)
    assert lost.returncode != 0 and "lost.tar.gz" not in os.listdir(consumer)
    assert "Failed to download artifact 'bundle-cpu-x86' via DVC remote" in lost.stderr
    pushed = _dvc("push", "-q", ARCHIVE, cwd=repo)
    assert pushed.returncode == 0


@pytest.mark.slow
def test_a_release_whose_objects_are_not_all_in_the_store_fails_naming_them(bundles, mnist_dir, s3, tmp_path):
    endpoint, _ = s3
    repo = _producer(tmp_path, bundles, endpoint)
    shutil.rmtree(repo / ".dvc" / "cache")  # the archive's object is gone from the cache, and never reached the store
    failed = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo)
    assert failed.returncode == 2
    assert "the remote lacks what the release needs: artifacts/deploy/cpu_x86.tar.gz" in failed.stderr
    assert f"{ARTIFACT}@v0.1.0" not in _run(["git", "tag"], repo).stdout


@pytest.mark.slow
def test_a_store_that_does_not_answer_is_one_line_naming_the_cause(bundles, mnist_dir, s3, tmp_path):
    endpoint, _ = s3
    repo = _producer(tmp_path, bundles, endpoint)
    _dvc("remote", "modify", "store", "endpointurl", f"http://127.0.0.1:{_free_port()}", cwd=repo)
    down = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo)
    assert down.returncode == 2 and _error_lines(down) == 1
    assert "dvc push failed:" in down.stderr and "Could not connect to the endpoint URL" in down.stderr


@pytest.mark.slow
def test_a_push_cut_mid_way_is_one_line_and_the_retry_sends_only_what_did_not_arrive(bundles, mnist_dir, s3,
                                                                                       tmp_path):
    """The store goes away after the first of two bundles arrived (moto keeps it): the release fails in one line
    and registers nothing; run again, it sends the missing bundle alone, then registers both."""
    endpoint, client = s3
    repo = _producer(tmp_path, bundles, endpoint, targets=("cpu_x86", "arm64_mobile"))
    sizes = [(repo / f"artifacts/deploy/{t}.tar.gz").stat().st_size for t in ("cpu_x86", "arm64_mobile")]
    proxy = FaultProxy(int(endpoint.rsplit(":", 1)[1]), die_after=max(sizes) + 16_384)
    _dvc("remote", "modify", "store", "endpointurl", f"http://127.0.0.1:{proxy.port}", cwd=repo)
    _dvc("remote", "modify", "store", "jobs", "1", cwd=repo)
    cut = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo)
    assert cut.returncode == 2 and _error_lines(cut) == 1, cut.stderr
    assert "dvc push failed:" in cut.stderr and "endpoint" in cut.stderr
    assert not (repo / "release" / "release.json").exists() and "@v0.1.0" not in _run(["git", "tag"], repo).stdout
    arrived = client.list_objects_v2(Bucket="handoff").get("KeyCount", 0)
    assert arrived == 1
    puts_before = (tmp_path / "moto.log").read_text().count('"PUT /handoff/store/files/md5/')
    FaultProxy(int(endpoint.rsplit(":", 1)[1]), port=proxy.port)  # the store is back
    again = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "moto.log").read_text().count('"PUT /handoff/store/files/md5/') - puts_before == 1
    assert client.list_objects_v2(Bucket="handoff")["KeyCount"] == 2


@pytest.mark.slow
def test_wrong_credentials_are_one_line_and_nothing_is_registered(bundles, mnist_dir, s3, tmp_path):
    """moto enforcing its IAM: a key it does not know is refused (403), named in one line."""
    import boto3

    endpoint, _ = s3
    repo = _producer(tmp_path, bundles, endpoint)
    admin = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing")
    iam = boto3.client("iam", **admin)
    iam.create_user(UserName="producer")
    iam.put_user_policy(UserName="producer", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="producer")["AccessKey"]
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                                  headers={"Content-Type": "text/plain"}), timeout=10).read()
    wrong = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo,
                      AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert wrong.returncode == 2 and _error_lines(wrong) == 1, wrong.stderr
    assert "dvc push failed:" in wrong.stderr and "Forbidden" in wrong.stderr
    assert "@v0.1.0" not in _run(["git", "tag"], repo).stdout
    right = _pipeline("release", "v0.1.0", "--data", str(mnist_dir), "--per-round", "20", cwd=repo,
                      AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    assert right.returncode == 0, right.stderr
