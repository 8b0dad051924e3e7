"""What the tests and the benchmarks share: test data builders, a broker and databases,
a firehose server. Not shipped; imported from the repository root."""
