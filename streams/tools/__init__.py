"""Tools for the people around the pipeline: local Kafka, topic provisioning, and more."""
