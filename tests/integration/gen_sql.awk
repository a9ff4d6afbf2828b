# Generate ~200k INSERTs in one transaction for the sqlite3 case of run.sh.
# Usage: awk -v rows=200000 -f gen_sql.awk > in.sql   (deterministic: srand(7))
BEGIN {
  if (rows == "") rows = 200000
  srand(7)
  abc = "abcdefghijklmnopqrstuvwxyz"
  print "PRAGMA synchronous=OFF;"
  print "PRAGMA journal_mode=MEMORY;"
  print "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);"
  print "BEGIN;"
  for (i = 1; i <= rows; i++) {
    n = int(rand() * 40)
    s = ""
    for (j = 0; j < n % 12 + 1; j++) s = s substr(abc, int(rand() * 26) + 1, 1)
    printf "INSERT INTO t VALUES(%d,%d,'%s%d',%.4f,zeroblob(%d));\n", i, int(rand() * 1000), s, i % 977, rand() * 1000, n * 10
  }
  print "COMMIT;"
}
