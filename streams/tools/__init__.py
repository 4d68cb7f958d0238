"""Tools for the people around the pipeline: local Kafka, topics, and (later) produce, simulate, tail."""
