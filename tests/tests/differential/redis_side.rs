//! Redis's side: a `redis-server` child process and the normalisation of
//! its replies. Each data type's commands are in that type's file.

use super::*;

/// A `redis-server` child process, killed on drop.
pub(super) struct RedisServer {
    pub(super) child: Child,
    pub(super) port: u16,
    pub(super) log: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free port, or `None` when it is not
    /// installed.
    pub(super) fn start() -> Option<Self> {
        const CANDIDATES: [&str; 3] = [
            "redis-server",
            "/usr/bin/redis-server",
            "/usr/local/bin/redis-server",
        ];
        let mut log = PathBuf::new();
        for attempt in 1..=5 {
            let port = free_port();
            log = std::env::temp_dir().join(format!("shoal-differential-redis-{port}.log"));
            let mut spawned = None;
            for binary in CANDIDATES {
                match Command::new(binary)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                    .arg("--logfile")
                    .arg(&log)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(child) => {
                        spawned = Some(child);
                        break;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => panic!("cannot start {binary}: {error}"),
                }
            }
            let child = spawned?;
            let mut server = RedisServer {
                child,
                port,
                log: log.clone(),
            };
            if server.wait_until_ready() {
                return Some(server);
            }
            eprintln!("redis-server did not start on port {port} (attempt {attempt}); retrying");
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("redis-server failed to start five times; its last log:\n{text}");
    }

    /// Polls until this child answers; false when it exited (for example
    /// because another process took the port meanwhile).
    pub(super) fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(con) = self.connect(0) {
                // Whoever answers on the port must be our child.
                let pid = RedisSide { con }.info("process_id");
                if pid == self.child.id().to_string() {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A connection to database `db` (each worker has its own).
    pub(super) fn connect(&self, db: usize) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/{db}", self.port))?;
        let con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        con.set_read_timeout(Some(Duration::from_secs(10)))?;
        con.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(con)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Runs operations on Redis and normalises the replies.
pub(super) struct RedisSide {
    pub(super) con: redis::Connection,
}

impl RedisSide {
    pub(super) fn call(&mut self, command: &redis::Cmd) -> Reply {
        match command.query::<redis::Value>(&mut self.con) {
            Ok(value) => from_redis(value),
            Err(error) => redis_error(&error),
        }
    }

    /// Empties this worker's database.
    pub(super) fn flush(&mut self) {
        assert_eq!(self.call(&redis::cmd("FLUSHDB")), Reply::Ok, "FLUSHDB");
    }

    /// A field of INFO's server section, such as `redis_version`; empty
    /// when the server does not answer.
    pub(super) fn info(&mut self, field: &str) -> String {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut self.con)
            .unwrap_or_default();
        info.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The reply Redis gives to `op`. Random commands check `shoal`'s reply
    /// instead of drawing Redis's own random answer.
    pub(super) fn apply(&mut self, op: &Op, shoal: &Reply) -> Reply {
        match op.kind() {
            OpKind::Strings => self.apply_strings(op, shoal),
            OpKind::Hashes => self.apply_hashes(op, shoal),
            OpKind::Lists => self.apply_lists(op, shoal),
            OpKind::Sets => self.apply_sets(op, shoal),
            OpKind::Snapshot => Reply::Array(KEYS.iter().map(|key| self.snapshot(key)).collect()),
        }
    }

    /// A collection write, then PEXPIRE when it asks for an expiry and
    /// succeeded.
    pub(super) fn write(&mut self, command: &redis::Cmd, key: &str, expiry: WriteExpiry) -> Reply {
        let reply = self.call(command);
        if let (WriteExpiry::Px(ms), Reply::Int(_)) = (expiry, &reply) {
            self.call(cmd("PEXPIRE", key).arg(ms));
        }
        reply
    }

    pub(super) fn ttl(&mut self, key: &str) -> Reply {
        match self.call(&cmd("PTTL", key)) {
            Reply::Int(ms) => Reply::Ttl(ms),
            other => other,
        }
    }

    /// HGETALL as a sorted array of `[field, value]` pairs.
    pub(super) fn hgetall(&mut self, key: &str) -> Reply {
        match self.call(&cmd("HGETALL", key)) {
            Reply::Array(flat) => unordered(
                flat.chunks(2)
                    .map(|pair| Reply::Array(pair.to_vec()))
                    .collect(),
            ),
            other => other,
        }
    }

    /// Type, TTL and contents of `key`.
    pub(super) fn snapshot(&mut self, key: &str) -> Reply {
        let kind = self.call(&cmd("TYPE", key));
        let contents = match &kind {
            Reply::Bytes(name) => match name.as_slice() {
                b"string" => self.call(&cmd("GET", key)),
                b"hash" => self.hgetall(key),
                b"list" => self.call(cmd("LRANGE", key).arg(0).arg(-1)),
                b"set" => sort_array(self.call(&cmd("SMEMBERS", key))),
                _ => Reply::Nil,
            },
            _ => Reply::Nil,
        };
        Reply::Array(vec![bytes(key), kind, self.ttl(key), contents])
    }

    /// Checks the members shoal popped against Redis's set, then removes
    /// them from it so that both keep the same state.
    pub(super) fn check_spop(&mut self, key: &str, count: Option<u32>, shoal: &Reply) -> Reply {
        let Some(popped) = members_of(shoal) else {
            return self.real_random(cmd("SPOP", key), count.map(i64::from));
        };
        let cardinality = match self.call(&cmd("SCARD", key)) {
            Reply::Int(n) => n,
            other => return other,
        };
        let expected = cardinality.min(i64::from(count.unwrap_or(1)));
        let removed = if popped.is_empty() {
            0
        } else {
            match self.call(cmd("SREM", key).arg(&popped)) {
                Reply::Int(n) => n,
                other => return other,
            }
        };
        let len = i64::try_from(popped.len()).expect("small");
        if len == expected && removed == len {
            shoal.clone()
        } else {
            Reply::Inconsistent(format!(
                "the set had {cardinality} members, {expected} should be popped; \
                 {removed} of those shoal popped were in it"
            ))
        }
    }

    /// Checks shoal's random members against Redis's set.
    pub(super) fn check_srandmember(
        &mut self,
        key: &str,
        count: Option<i64>,
        shoal: &Reply,
    ) -> Reply {
        let Some(chosen) = members_of(shoal) else {
            return self.real_random(cmd("SRANDMEMBER", key), count);
        };
        let set: BTreeSet<Vec<u8>> = match self.call(&cmd("SMEMBERS", key)) {
            Reply::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Reply::Bytes(member) => Some(member),
                    _ => None,
                })
                .collect(),
            other => return other,
        };
        let cardinality = set.len();
        let (expected, distinct) = match count {
            None => (cardinality.min(1), true),
            Some(n) if n >= 0 => (cardinality.min(usize::try_from(n).expect("small")), true),
            Some(_) if cardinality == 0 => (0, false),
            Some(n) => (usize::try_from(n.unsigned_abs()).expect("small"), false),
        };
        let all_members = chosen.iter().all(|member| set.contains(member));
        let unique = chosen.iter().collect::<BTreeSet<_>>().len() == chosen.len();
        if chosen.len() == expected && all_members && (unique || !distinct) {
            shoal.clone()
        } else {
            Reply::Inconsistent(format!(
                "the set has {cardinality} members, {expected} expected; all members: \
                 {all_members}; distinct: {unique}"
            ))
        }
    }

    /// Redis's own answer to a random command, when shoal failed.
    pub(super) fn real_random(&mut self, mut command: redis::Cmd, count: Option<i64>) -> Reply {
        if let Some(count) = count {
            command.arg(count);
        }
        match self.call(&command) {
            Reply::Array(items) => unordered(items),
            other => other,
        }
    }
}

pub(super) fn cmd(name: &str, key: &str) -> redis::Cmd {
    let mut command = redis::cmd(name);
    command.arg(key);
    command
}

pub(super) fn sort_array(reply: Reply) -> Reply {
    match reply {
        Reply::Array(items) => unordered(items),
        other => other,
    }
}

pub(super) fn from_redis(value: redis::Value) -> Reply {
    match value {
        redis::Value::Nil => Reply::Nil,
        redis::Value::Okay => Reply::Ok,
        redis::Value::Int(n) => Reply::Int(n),
        redis::Value::BulkString(data) => Reply::Bytes(data),
        redis::Value::SimpleString(text) if text == "OK" => Reply::Ok,
        redis::Value::SimpleString(text) => Reply::Bytes(text.into_bytes()),
        redis::Value::Array(items) => Reply::Array(items.into_iter().map(from_redis).collect()),
        other => panic!("unexpected RESP value from redis-server: {other:?}"),
    }
}

pub(super) fn redis_error(error: &redis::RedisError) -> Reply {
    let Some(code) = error.code() else {
        panic!("redis-server connection failed: {error}");
    };
    let detail = error.detail().unwrap_or_default();
    let kind = match code {
        "WRONGTYPE" => ErrorKind::WrongType,
        "ERR" if detail.contains("not an integer") => ErrorKind::NotInteger,
        "ERR" if detail.contains("would overflow") => ErrorKind::Overflow,
        "ERR" if detail.contains("no such key") => ErrorKind::NoSuchKey,
        "ERR" if detail.contains("index out of range") => ErrorKind::OutOfRange,
        _ => ErrorKind::Unexpected(format!("{code} {detail}")),
    };
    Reply::Error(kind)
}
