"""What tests and benches use, apart from what ships to operators: the local Kafka
manager, the independent checker, worker processes, the stand-in workload and the
bench. Nothing in `core/`, `agents/` or `tools/` imports it."""
