"""Everything that touches the world: k6, HTTP, SQL, shell, files, the store, reports."""
