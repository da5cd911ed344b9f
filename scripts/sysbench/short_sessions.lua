-- Short sessions for scripts/upgrade-under-load.sh: every event logs in, runs one
-- read-write transaction (point selects and an update) and logs out, so logins go on
-- all the time, also while one Sluice hands its listener to another. A failure does not
-- stop the thread: failed logins and failed sessions are counted, and each thread
-- prints its counts in one UPGRADE_COUNTS line at the end.

sysbench.cmdline.options = {
   tables = {"Number of tables", 4},
   table_size = {"Rows per table", 10000},
   reads = {"Point selects per session", 8},
}

local sessions, failed_logins, failed_sessions = 0, 0, 0

function thread_init()
   drv = sysbench.sql.driver()
end

local function transaction(con)
   local t = sysbench.rand.uniform(1, sysbench.opt.tables)
   con:query("BEGIN")
   for _ = 1, sysbench.opt.reads do
      con:query(string.format("SELECT c FROM sbtest%d WHERE id = %d", t, sysbench.rand.uniform(1, sysbench.opt.table_size)))
   end
   con:query(string.format("UPDATE sbtest%d SET k = k + 1 WHERE id = %d", t, sysbench.rand.uniform(1, sysbench.opt.table_size)))
   con:query("COMMIT")
end

function event()
   local ok, con = pcall(drv.connect, drv)
   if not ok then
      failed_logins = failed_logins + 1
      print("UPGRADE_ERROR login: " .. tostring(con))
      return
   end
   local done, err = pcall(transaction, con)
   if done then
      sessions = sessions + 1
   else
      failed_sessions = failed_sessions + 1
      print("UPGRADE_ERROR session: " .. tostring(type(err) == "table" and (err.errcode or err.message) or err))
   end
   pcall(con.disconnect, con)
end

function thread_done()
   print(string.format("UPGRADE_COUNTS sessions=%d failed_logins=%d failed_sessions=%d", sessions, failed_logins, failed_sessions))
end
