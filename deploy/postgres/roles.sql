-- Least-privilege roles for the agency inventory (vendorwatch --inventory postgres://…).
-- Run as the database owner once the schema exists (the first sensor started with the
-- owner's role creates it; later schema migrations need the owner again), e.g.
--   psql "postgres://owner@db.example/vendorwatch" -f deploy/postgres/roles.sql
--   psql … -c "ALTER ROLE vendorwatch_sensor PASSWORD '…'"   (and the analyst's)
-- Sensors only add and update their own rows; analysts only read. Neither may create,
-- alter or drop anything, nor delete.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vendorwatch_sensor') THEN
    CREATE ROLE vendorwatch_sensor LOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vendorwatch_analyst') THEN
    CREATE ROLE vendorwatch_analyst LOGIN;
  END IF;
END $$;
GRANT SELECT ON vw_schema TO vendorwatch_sensor, vendorwatch_analyst;
GRANT SELECT, INSERT, UPDATE ON vw_ship_marks, vw_witness_hosts, vw_witness_detections
  TO vendorwatch_sensor;
GRANT SELECT, INSERT ON vw_alerts TO vendorwatch_sensor;
GRANT SELECT ON vw_ship_marks, vw_witness_hosts, vw_witness_detections, vw_alerts,
  vw_detections, vw_hosts TO vendorwatch_analyst;
