-- An example migration file: psql -h 127.0.0.1 -p 5434 -U freshet freshet -f sql/examples/001_shop.sql
-- Tables fed by DML, and materialized views kept fresh incrementally.

CREATE TABLE IF NOT EXISTS customers (id INT PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE TABLE IF NOT EXISTS orders (
    id BIGINT PRIMARY KEY,
    customer INT NOT NULL,
    amount NUMERIC(12,2) NOT NULL,
    status VARCHAR(16) DEFAULT 'open',
    created_at TIMESTAMP DEFAULT now()
);

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_by_status AS
    SELECT status, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY status;

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_by_region AS
    SELECT c.region, sum(o.amount) AS revenue
    FROM orders o JOIN customers c ON o.customer = c.id
    GROUP BY c.region;
