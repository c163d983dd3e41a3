import csv
import json

from pipeline.core.io import write_json
from tests.conftest import config, run_stage


def test_report_renders_variants_gates_targets_and_confusion(tmp_path, bundles, mnist_dir):
    parity = bundles["parity"]
    files = {name: tmp_path / f"{name}.json" for name in ("train", "validate", "bench")}
    write_json(files["validate"], parity)
    write_json(files["train"], {"test_accuracy": 0.9812, "epochs": 2})
    history = [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.9, "test_loss": 0.3, "test_accuracy": 0.95},
               {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.95, "test_loss": 0.1, "test_accuracy": 0.98}]
    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    manifest = json.loads((bundles["cpu_x86"] / "manifest.json").read_text())
    result = run_stage("report", config(), train_file=files["train"], parity_file=files["validate"],
                       bench_file=files["bench"], train_plot=tmp_path / "train.csv",
                       deploy_dir=bundles["cpu_x86"].parent, data_dir=mnist_dir, out_dir=tmp_path / "report",
                       **{k: tmp_path / "timings" / f"{k}.json" for k in ("train_timings", "bench_timings",
                                                                            "web_timings", "sweep_file")})
    page = (tmp_path / "report" / "index.html").read_text()
    assert "98.12%" in page and "all parity gates pass" in page
    for name, row in parity["variants"].items():
        assert f"<td>{name}</td>" in page and f"{row['accuracy']:.2%}" in page
    assert f"<b>{manifest['model']['variant']}</b>" in page and "CPUExecutionProvider" in page
    assert "Confusion matrix of the shipped cpu_x86 model" in page and page.count("<svg") == 2
    rows = result.plots["confusion"]
    assert len(rows) == 10000
    correct = sum(r["actual"] == r["predicted"] for r in rows) / len(rows)
    assert f"({correct:.2%})" in page and correct > 0.95
