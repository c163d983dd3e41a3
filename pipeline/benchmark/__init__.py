"""The benchmark's orchestration: which runners the bench stage times (torch, ORT, OpenVINO, the shipped bundles
on their own runtimes) and the INT8-vs-fp32 crossover; the measurement primitives stay in pipeline/measure/."""
