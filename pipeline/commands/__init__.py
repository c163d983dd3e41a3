"""The `pipeline` command's commands, one module per role: the stages (from the generated command table), the
project's files (params, dvc, timings, results), the consumer side (verify, predict) and releases. Each imports
only typer and light modules at its top; what a command runs is imported when it runs, so `pipeline --help`
starts without numpy, pydantic, onnxruntime or torch."""
