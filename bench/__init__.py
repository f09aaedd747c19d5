"""The lossfmt benchmark suite: `python -m bench` measures speed, size and read claims side by side with
TensorBoard, tensorboardX, CSV and tbparse in one process, and writes BENCHMARKS.md."""
