"""The benchmark harness: latency, throughput and end-to-end cost of the runtime, measured interleaved in rounds."""
