"""Pure rules: consent decisions, aggregation, rendering. No faust, no Kafka, no I/O."""
