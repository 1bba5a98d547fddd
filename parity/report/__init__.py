"""Layer 7, report: the HTML report, shard merging, the Markdown/text summary."""
