-- Queries run by the sqlite3 case of run.sh after gen_sql.awk output; every result is ordered.
CREATE INDEX t_grp ON t(grp, val);
CREATE INDEX t_name ON t(name);
SELECT count(*), sum(grp), round(sum(val), 2), sum(length(blob)), min(name), max(name) FROM t;
SELECT grp, count(*), round(avg(val), 4), group_concat(id % 10, '') FROM t GROUP BY grp ORDER BY grp LIMIT 50;
SELECT substr(name, 1, 2) AS p, count(*), round(total(val), 3) FROM t GROUP BY p ORDER BY count(*) DESC, p LIMIT 40;
SELECT a.grp, count(*) FROM t a JOIN t b ON b.id = a.id - 1 AND b.grp = a.grp GROUP BY a.grp ORDER BY 2 DESC, 1 LIMIT 10;
UPDATE t SET name = name || '_u', val = val * 2 WHERE grp % 3 = 0;
DELETE FROM t WHERE grp % 7 = 0;
SELECT count(*), round(sum(val), 2), max(length(name)) FROM t;
SELECT name, grp FROM t WHERE name LIKE 'ab%' ORDER BY name, grp LIMIT 20;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT count(*), sum(x), length(group_concat(x, ',')) FROM c;
SELECT grp, max(rn), sum(rn % 97) FROM (SELECT grp, row_number() OVER (PARTITION BY grp % 10 ORDER BY val * 7 % 13, name, id) AS rn FROM t) GROUP BY grp ORDER BY grp LIMIT 30;
SELECT count(DISTINCT name), count(DISTINCT substr(name, 2, 3)) FROM t;
VACUUM;
PRAGMA integrity_check;
