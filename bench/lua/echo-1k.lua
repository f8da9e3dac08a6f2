-- POST /echo with a 1 KiB body (used by bench/run for the "POST echo 1 KiB" route).
wrk.method = "POST"
wrk.body = string.rep("x", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
