"""Static files (CSS, scripts, the tracker source), shipped in the wheel as package data."""
