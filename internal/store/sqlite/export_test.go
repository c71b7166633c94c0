package sqlite

// SetRowBytes sets the row size bound for log_entries.
func SetRowBytes(n int) { rowBytes = n }
