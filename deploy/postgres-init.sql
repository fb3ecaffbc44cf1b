-- Ratchet's own store, beside Temporal's databases, owned by the same user (docker-compose.yml).
CREATE DATABASE ratchet OWNER temporal;
