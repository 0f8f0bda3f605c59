-- Installed by deploy/local/stack.sh into the local stack's `ferretdb` database (idempotent; run
-- on every start of its PostgreSQL). Local stack only: production uses real MongoDB.
--
-- Why: FerretDB v1.24's PostgreSQL backend pushes an equality filter `{f: v}` down as
--   _jsonb -> 'f' @> '<v as jsonb>'
-- (internal/backends/postgresql/query.go, filterEqual), but creates its indexes, `_id` included,
-- as btree indexes on `(_jsonb -> 'f')` (metadata/registry.go). A btree index cannot serve `@>`,
-- so every `find({_id: ...})`, `update_one({_id: ...})` and `{author_id: ...}` lookup scans the
-- whole table: time grows linearly with the collection.
--
-- What: an event trigger gives each btree index that FerretDB creates on a `_jsonb` expression a
-- companion GIN index (`jsonb_path_ops`, which serves `@>`) on the same expression, named
-- agora_gin_<md5(table oid, expression)>. A second trigger drops a companion when its btree
-- index is dropped (FerretDB's dropIndexes); dropping a collection or database drops the
-- companions with the table. FerretDB never sees these indexes (listIndexes reads FerretDB's own
-- metadata table), uniqueness stays with FerretDB's btree index, and the UPDATE/DELETE FerretDB
-- issues by `_id` (`WHERE _jsonb -> '_id' = $1`) keep using the btree index.
-- `fastupdate = off`: a GIN pending list is scanned linearly on every lookup, which brings the
-- linear cost back right after bulk inserts; the server runs with plan_cache_mode =
-- force_custom_plan so FerretDB's prepared `_jsonb -> $1 @> $2` is planned with the key known.
-- Errors inside the triggers only raise warnings: they must never make FerretDB's DDL fail.

CREATE OR REPLACE FUNCTION public.agora_gin_name(tbl oid, expr text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'agora_gin_' || md5(tbl::text || ' ' || expr) $$;

-- Creates the missing companions of the btree indexes `indexes` (index oids).
CREATE OR REPLACE FUNCTION public.agora_gin_create(indexes oid[]) RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
	r record;
	made integer := 0;
BEGIN
	FOR r IN
		SELECT DISTINCT i.indrelid, pg_get_indexdef(i.indexrelid, k, false) AS expr
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_am am ON am.oid = ic.relam
		CROSS JOIN LATERAL generate_series(1, i.indnkeyatts) AS k
		WHERE i.indexrelid = ANY (indexes) AND am.amname = 'btree'
	LOOP
		CONTINUE WHEN position('_jsonb' IN r.expr) = 0;
		CONTINUE WHEN EXISTS (
			SELECT 1 FROM pg_class c
			WHERE c.relname = public.agora_gin_name(r.indrelid, r.expr)
				AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = r.indrelid)
		);
		BEGIN
			EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((%s) jsonb_path_ops) WITH (fastupdate = off)',
				public.agora_gin_name(r.indrelid, r.expr), r.indrelid::regclass, r.expr);
			made := made + 1;
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'agora: no GIN companion for % on %: %', r.expr, r.indrelid::regclass, SQLERRM;
		END;
	END LOOP;
	RETURN made;
END
$fn$;

CREATE OR REPLACE FUNCTION public.agora_gin_on_create() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM public.agora_gin_create(array_agg(objid))
	FROM pg_event_trigger_ddl_commands()
	WHERE command_tag = 'CREATE INDEX' AND object_type = 'index';
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'agora_gin_on_create: %', SQLERRM;
END
$fn$;

CREATE OR REPLACE FUNCTION public.agora_gin_on_drop() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
DECLARE
	r record;
BEGIN
	-- Only when someone else's index was dropped (not one of ours, which would recurse).
	IF NOT EXISTS (
		SELECT 1 FROM pg_event_trigger_dropped_objects()
		WHERE object_type = 'index' AND object_name NOT LIKE 'agora\_gin\_%'
	) THEN
		RETURN;
	END IF;
	FOR r IN
		SELECT g.indexrelid::regclass AS gin, gc.relname, g.indrelid
		FROM pg_index g
		JOIN pg_class gc ON gc.oid = g.indexrelid
		JOIN pg_namespace n ON n.oid = gc.relnamespace
		WHERE gc.relname LIKE 'agora\_gin\_%'
			AND n.nspname IN (
				SELECT schema_name FROM pg_event_trigger_dropped_objects() WHERE object_type = 'index'
			)
	LOOP
		CONTINUE WHEN EXISTS (
			SELECT 1
			FROM pg_index b
			JOIN pg_class bc ON bc.oid = b.indexrelid
			JOIN pg_am am ON am.oid = bc.relam
			CROSS JOIN LATERAL generate_series(1, b.indnkeyatts) AS k
			WHERE b.indrelid = r.indrelid AND am.amname = 'btree'
				AND public.agora_gin_name(b.indrelid, pg_get_indexdef(b.indexrelid, k, false)) = r.relname
		);
		EXECUTE format('DROP INDEX IF EXISTS %s', r.gin);
	END LOOP;
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING 'agora_gin_on_drop: %', SQLERRM;
END
$fn$;

DO $do$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'agora_gin_on_create') THEN
		CREATE EVENT TRIGGER agora_gin_on_create ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
			EXECUTE FUNCTION public.agora_gin_on_create();
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'agora_gin_on_drop') THEN
		CREATE EVENT TRIGGER agora_gin_on_drop ON sql_drop WHEN TAG IN ('DROP INDEX')
			EXECUTE FUNCTION public.agora_gin_on_drop();
	END IF;
END
$do$;

-- Companions for indexes that existed before these triggers (a cluster made by an older
-- stack.sh). Cheap when there is nothing to do.
SELECT public.agora_gin_create(array_agg(i.indexrelid)) AS agora_gin_backfilled
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
	AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = '_jsonb');
