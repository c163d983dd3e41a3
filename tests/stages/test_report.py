import json

from pipeline.io import write_json
from pipeline.stages import report


def test_report_renders_variants_gates_targets_and_confusion(tmp_path, bundles, mnist_dir):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    parity = bundles["parity"]
    write_json(metrics / "parity.json", parity)
    history = [{"epoch": 1, "train_loss": 0.9, "test_loss": 0.3, "test_accuracy": 0.95},
               {"epoch": 2, "train_loss": 0.5, "test_loss": 0.1, "test_accuracy": 0.98}]
    write_json(metrics / "train.json",
               {"test_accuracy": 0.9812, "epochs": 2, "seconds": 5.5, "wall_seconds": 6.0, "history": history})
    manifest = json.loads((bundles["cpu_x86"] / "manifest.json").read_text())
    write_json(metrics / "package_cpu_x86.json", {"target": "cpu_x86", "chosen": manifest["model"]["variant"],
                                                   "reason": manifest["selection"]["reason"], "wall_seconds": 1.5,
                                                   "verified": {"providers": ["CPUExecutionProvider"]}})
    result = report.run(metrics, bundles["cpu_x86"].parent, mnist_dir, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert "98.12%" in page and "all parity gates pass" in page
    for name, row in parity["variants"].items():
        assert f"<td>{name}</td>" in page and f"{row['accuracy']:.2%}" in page
    assert f"<b>{manifest['model']['variant']}</b>" in page and "CPUExecutionProvider" in page
    assert "Confusion matrix of the shipped cpu_x86 model" in page and page.count("<svg") == 2
    rows = result.metrics["confusion_rows"]
    assert len(rows) == 10000
    correct = sum(r["actual"] == r["predicted"] for r in rows) / len(rows)
    assert f"({correct:.2%})" in page and correct > 0.95
    assert "<td>total</td><td class='n'>7.5</td>" in page
