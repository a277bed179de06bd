"""Export (raw events and profiles out, in CSV, NDJSON or Parquet) and import (our own
export, Umami's CSV, Segment's NDJSON) straight between files and ClickHouse."""
