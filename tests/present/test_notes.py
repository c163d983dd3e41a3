"""A reason several rows share is stated once (present/notes.py)."""

from pipeline.present.notes import Notes

UNPROVED = ("no runtime with {p} runs on this machine, and metrics/device_runs holds no trusted record of this bundle "
            "(content sha256 {d}) on it: on a machine with {p}, run `python {t}/verify.py {t} --record {t}.{p}.json`")


def test_reasons_that_differ_only_by_the_rows_own_names_become_one_note():
    notes = Notes()
    rows = [notes.add(UNPROVED.format(p=p, t=t, d=d), {t: "target", p: "provider"})
            for p, t, d in (("CUDAExecutionProvider", "cuda", "5c0b60d5e0e8"),
                            ("TensorrtExecutionProvider", "tensorrt", "ff4d81c2a1e9"),
                            ("CUDAExecutionProvider", "tensorrt", "ff4d81c2a1e9"))]
    java = "no Java consumer: ONNX Runtime's Java binding comes only from Maven Central"
    alone = notes.add(java, {"cpu_x86": "target"})
    assert [notes.cell(r, "✗ ") for r in rows] == ["✗ see note 1"] * 3
    assert notes.cell(alone) == "no Java consumer: ONNX Runtime&#x27;s Java binding comes only from Maven Central"
    page = notes.html()
    assert page.count("<li>") == 1 and page.count("holds no trusted record") == 1
    assert "python <i>TARGET</i>/verify.py <i>TARGET</i> --record <i>TARGET</i>.<i>PROVIDER</i>.json" in page
    assert "sha256 …" in page and "<i>PROVIDER</i> and <i>TARGET</i> stand for the row's provider and target" in page


def test_a_name_is_replaced_only_where_it_stands_alone():
    """`web` the target is not the `web` of onnxruntime-web; a reason given by one row stays in its row."""
    notes = Notes()
    first = notes.add("web runs onnxruntime-web", {"web": "target"})
    second = notes.add("page runs onnxruntime-web", {"page": "target"})
    assert notes.cell(first) == "see note 1" == notes.cell(second)
    assert "<i>TARGET</i> runs onnxruntime-web" in notes.html()
    assert Notes().html() == ""
