"""Closed runs on object storage: read/dataset/export/scan_polars over s3:// URLs, against a real local S3
server (moto's, in its own process on 127.0.0.1), and fsspec URLs (its memory filesystem)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest

import lossfmt
from lossfmt import LossFormatError

pytest.importorskip("moto.server")
pafs = pytest.importorskip("pyarrow.fs")

_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test closes our stdin
server.stop()
"""
_buckets = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """host:port of a moto S3 server on the loopback interface, for this module's tests."""
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            env.setenv(key, value)
        server = subprocess.Popen(
            [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            port = server.stdout.readline().strip()  # printed once the server listens
            assert port.isdigit(), "moto server did not start"
            yield f"127.0.0.1:{port}"
        finally:
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def bucket(endpoint) -> tuple[pafs.S3FileSystem, str, str]:
    """(filesystem, fresh bucket name, URL query selecting the local server)."""
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True
    )
    name = f"runs-{next(_buckets)}"
    fs.create_dir(name)
    return fs, name, f"?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def write_run(path: Path, n: int = 5, meta: dict | None = None) -> Path:
    with lossfmt.LossWriter(path, meta=meta) as writer:
        for step in range(n):
            writer.add(step, 1.0 / (step + 1), count=4, epoch=step // 2)
        writer.add(n - 1, 0.5, "val_loss")
    return path


def upload(fs: pafs.S3FileSystem, local: Path, key: str) -> None:
    """What users do after close: copy the closed run to the bucket."""
    with fs.open_output_stream(key) as out:
        out.write(local.read_bytes())


def test_read_a_closed_run_from_s3_gives_what_the_local_file_gives(tmp_path, bucket):
    fs, name, query = bucket
    local = write_run(tmp_path / "exp1.arrow", meta={"lr": 0.1})
    upload(fs, local, f"{name}/runs/exp1.arrow")
    remote = lossfmt.read(f"s3://{name}/runs/exp1.arrow{query}")
    assert remote.equals(lossfmt.read(local))
    info = lossfmt.run_info(remote.schema)
    assert (info["run"], info["meta"]) == ("exp1", {"lr": 0.1})
    tags = lossfmt.read(f"s3://{name}/runs/exp1.arrow{query}", tags="val_loss", columns=["step", "value"])
    assert tags.to_pylist() == [{"step": 4, "value": 0.5}]


def test_a_prefix_or_a_glob_names_every_run_with_the_run_column(tmp_path, bucket):
    fs, name, query = bucket
    for run in ("a", "b", "c"):
        upload(fs, write_run(tmp_path / f"{run}.arrow"), f"{name}/sweep/{run}.arrow")
    upload(fs, write_run(tmp_path / "other.arrow"), f"{name}/sweep/nested/other.arrow")
    fs.create_dir(f"{name}/sweep/notes")
    both = lossfmt.read(f"s3://{name}/sweep/{query}")
    assert sorted(set(both["run"].to_pylist())) == ["a", "b", "c"]
    assert both.num_rows == 3 * 6
    globbed = lossfmt.read(f"s3://{name}/sweep/[ab].arrow{query}")
    assert sorted(set(globbed["run"].to_pylist())) == ["a", "b"]
    assert lossfmt.run_paths(f"s3://{name}/sweep/*/*.arrow{query}") == [
        f"s3://{name}/sweep/nested/other.arrow{query}"
    ]


def test_dataset_over_s3_is_lazy_and_matches_the_local_files(tmp_path, bucket):
    fs, name, query = bucket
    for run in ("a", "b"):
        upload(fs, write_run(tmp_path / "runs" / f"{run}.arrow"), f"{name}/runs/{run}.arrow")
    runs = lossfmt.dataset(f"s3://{name}/runs/{query}")
    assert isinstance(runs.filesystem, pafs.S3FileSystem)  # scanned from the bucket, not copied in
    got = runs.to_table(filter=pc.field("tag") == "val_loss", columns=["run", "value"])
    want = lossfmt.dataset(tmp_path / "runs").to_table(
        filter=pc.field("tag") == "val_loss", columns=["run", "value"]
    )
    assert got.sort_by("run").equals(want.sort_by("run"))


def test_a_crashed_run_copied_to_s3_reads_up_to_its_last_complete_event(tmp_path, bucket):
    fs, name, query = bucket
    with lossfmt.LossWriter(tmp_path / "crash.arrow") as writer:
        for step in range(3):
            writer.add(step, float(step))
        writer.flush()
        data = (tmp_path / "crash.arrow").read_bytes()
    with fs.open_output_stream(f"{name}/crash.arrow") as out:
        out.write(data + b"\xff\xff\xff\xff\x40\x00\x00\x00torn")
    assert lossfmt.read(f"s3://{name}/crash.arrow{query}")["value"].to_pylist() == [0.0, 1.0, 2.0]
    table = lossfmt.dataset([f"s3://{name}/crash.arrow{query}"]).to_table()
    assert table["value"].to_pylist() == [0.0, 1.0, 2.0]


def test_export_parquet_from_s3_is_incremental_too(tmp_path, bucket):
    duckdb = pytest.importorskip("duckdb")
    fs, name, query = bucket
    for run in ("a", "b"):
        upload(fs, write_run(tmp_path / f"{run}.arrow", meta={"lr": 0.5}), f"{name}/runs/{run}.arrow")
    out = tmp_path / "out"
    assert lossfmt.export_parquet(f"s3://{name}/runs/{query}", out).written == 2
    assert lossfmt.export_parquet(f"s3://{name}/runs/{query}", out).written == 0
    upload(fs, write_run(tmp_path / "c.arrow"), f"{name}/runs/c.arrow")
    assert lossfmt.export_parquet(f"s3://{name}/runs/{query}", out).written == 1
    rows = duckdb.sql(
        f"SELECT run, count(*), any_value(lr) FROM '{out}/**/*.parquet' GROUP BY run ORDER BY run"
    )
    assert rows.fetchall() == [("a", 6, 0.5), ("b", 6, 0.5), ("c", 6, None)]


def test_scan_polars_over_s3(tmp_path, bucket):
    pl = pytest.importorskip("polars")
    fs, name, query = bucket
    for run in ("a", "b"):
        upload(fs, write_run(tmp_path / f"{run}.arrow"), f"{name}/runs/{run}.arrow")
    frame = lossfmt.scan_polars(f"s3://{name}/runs/{query}").filter(pl.col("tag") == "val_loss").collect()
    assert sorted(frame.select("run", "value").rows()) == [("a", 0.5), ("b", 0.5)]


def test_the_standard_aws_endpoint_variable_works_without_url_options(
    tmp_path, bucket, endpoint, monkeypatch
):
    fs, name, _ = bucket
    upload(fs, write_run(tmp_path / "exp.arrow"), f"{name}/exp.arrow")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{endpoint}")
    assert lossfmt.read(f"s3://{name}/exp.arrow").num_rows == 6


def test_missing_objects_and_damaged_ones_are_errors_naming_the_url(tmp_path, bucket):
    fs, name, query = bucket
    with pytest.raises(LossFormatError, match=rf"s3://{name}/nope\.arrow.*: no such file"):
        lossfmt.read(f"s3://{name}/nope.arrow{query}")
    with pytest.raises(LossFormatError, match=r"no files match"):
        lossfmt.read(f"s3://{name}/*.arrow{query}")
    with pytest.raises(LossFormatError, match=r"directory has no \.arrow files"):
        fs.create_dir(f"{name}/empty")
        lossfmt.read(f"s3://{name}/empty{query}")
    with fs.open_output_stream(f"{name}/junk.arrow") as out:
        out.write(b"not a lossfmt file")
    with pytest.raises(LossFormatError, match=rf"s3://{name}/junk\.arrow.*not a lossfmt file"):
        lossfmt.read(f"s3://{name}/junk.arrow{query}")
    with pytest.raises(LossFormatError, match=rf"s3://{name}/junk\.arrow"):
        lossfmt.dataset(f"s3://{name}/junk.arrow{query}")


def test_other_protocols_go_through_fsspec(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    try:
        for run in ("a", "b"):
            memory.pipe(f"/lossfmt-test/{run}.arrow", write_run(tmp_path / f"{run}.arrow").read_bytes())
        table = lossfmt.read("memory://lossfmt-test/")
        assert sorted(set(table["run"].to_pylist())) == ["a", "b"]
        one = lossfmt.read("memory://lossfmt-test/a.arrow")
        assert one.equals(lossfmt.read(tmp_path / "a.arrow"))
        assert lossfmt.dataset("memory://lossfmt-test/*.arrow").count_rows() == 12
    finally:
        memory.rm("/lossfmt-test", recursive=True)


def test_a_protocol_nobody_knows_is_a_clear_error():
    with pytest.raises(LossFormatError, match=r"nosuchproto://x/a\.arrow.*cannot open this URL"):
        lossfmt.read("nosuchproto://x/a.arrow")


def test_a_local_and_a_remote_run_sharing_a_name_are_told_apart_as_read_does(tmp_path, bucket):
    pl = pytest.importorskip("polars")
    fs, name, query = bucket
    local = write_run(tmp_path / "exp.arrow")
    upload(fs, local, f"{name}/copy/exp.arrow")
    sources = [str(local), f"s3://{name}/copy/exp.arrow{query}"]
    expected = sorted(set(lossfmt.read(sources)["run"].to_pylist()))
    assert len(expected) == 2
    assert sorted(lossfmt.scan_polars(sources).select(pl.col("run").unique()).collect()["run"]) == expected
    assert sorted(set(lossfmt.dataset(sources).to_table()["run"].to_pylist())) == expected
