"""Data access shared by every package: engines, the mapped entity as SQL, database errors."""
