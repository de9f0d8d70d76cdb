//! In-memory fakes of the three I/O traits ([`Inventory`], [`DnsTarget`], [`LoadBalancer`])
//! for testing the pass and the controller alone. Each fake is a handle: `boxed()` gives
//! the reconciler a trait object sharing its state, and the test keeps the handle to script
//! faults (fail, slow, accept writes that do not read back) and to read the calls made.
//! Delays sleep on tokio's clock, so tests with paused time do not wait for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use ipdrift::BoxFuture;
use ipdrift::dns::{DnsTarget, RecordChange};
use ipdrift::inventory::Inventory;
use ipdrift::lb::{LoadBalancer, ServerChange};
use ipdrift::model::{
    DnsName, Instance, InstanceState, ObservedServer, RecordKey, RecordSet, RecordType,
    ServerAdmin, ServerKey,
};
use ipdrift::reconcile::Parts;
use tokio::time::Instant;

/// How calls of one kind (reads or writes) behave.
#[derive(Debug, Clone, Default)]
struct Fault {
    /// Each call takes this long first.
    delay: Duration,
    /// Each call then fails with this message.
    fail: Option<String>,
}

impl Fault {
    async fn play(self) -> anyhow::Result<()> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.fail {
            Some(message) => bail!("{message}"),
            None => Ok(()),
        }
    }
}

/// One call a fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A source listing, a DNS read (RRsets or the zone listing) or a server read.
    Read,
    /// A write batch of this many changes.
    Write(usize),
}

/// What a fake saw: each call with the (tokio) time it started.
#[derive(Debug, Default)]
struct Log(Vec<(Instant, Call)>);

impl Log {
    fn push(&mut self, call: Call) {
        self.0.push((Instant::now(), call));
    }

    fn reads(&self) -> Vec<Instant> {
        self.0
            .iter()
            .filter(|(_, c)| *c == Call::Read)
            .map(|(at, _)| *at)
            .collect()
    }

    fn writes(&self) -> usize {
        self.0
            .iter()
            .filter(|(_, c)| matches!(c, Call::Write(_)))
            .count()
    }
}

/// A source whose instances the test sets.
#[derive(Clone)]
pub struct FakeInventory {
    name: String,
    state: Arc<Mutex<InventoryState>>,
}

#[derive(Default)]
struct InventoryState {
    instances: Vec<Instance>,
    list: Fault,
    log: Log,
}

impl FakeInventory {
    pub fn new(name: &str, instances: Vec<Instance>) -> FakeInventory {
        let state = InventoryState {
            instances,
            ..InventoryState::default()
        };
        FakeInventory {
            name: name.to_string(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn boxed(&self) -> Box<dyn Inventory> {
        Box::new(self.clone())
    }

    /// What the next listings return (an empty list is a suspicious answer, not a failure).
    pub fn set_instances(&self, instances: Vec<Instance>) {
        self.state.lock().unwrap().instances = instances;
    }

    /// Listings fail with `message` until [`Self::recover`].
    pub fn fail(&self, message: &str) {
        self.state.lock().unwrap().list.fail = Some(message.to_string());
    }

    /// Each listing takes `delay` before it answers.
    pub fn slow(&self, delay: Duration) {
        self.state.lock().unwrap().list.delay = delay;
    }

    /// Listings answer at once and succeed again.
    pub fn recover(&self) {
        self.state.lock().unwrap().list = Fault::default();
    }

    /// When each listing started.
    pub fn lists(&self) -> Vec<Instant> {
        self.state.lock().unwrap().log.reads()
    }
}

impl Inventory for FakeInventory {
    fn name(&self) -> &str {
        &self.name
    }

    fn list(&self) -> BoxFuture<'_, anyhow::Result<Vec<Instance>>> {
        let fault = {
            let mut state = self.state.lock().unwrap();
            state.log.push(Call::Read);
            state.list.clone()
        };
        Box::pin(async move {
            fault.play().await?;
            Ok(self.state.lock().unwrap().instances.clone())
        })
    }
}

/// A zone held in memory: RRsets and ownership records, as a DNS server would keep them.
#[derive(Clone)]
pub struct FakeDns {
    name: String,
    zone: DnsName,
    state: Arc<Mutex<DnsState>>,
}

#[derive(Default)]
struct DnsState {
    rrsets: BTreeMap<RecordKey, RecordSet>,
    ownership: BTreeMap<DnsName, String>,
    read: Fault,
    write: Fault,
    /// Writes succeed and change nothing (a server that acknowledges and loses them).
    lose_writes: bool,
    log: Log,
    batches: Vec<Vec<RecordChange>>,
}

impl FakeDns {
    pub fn new(name: &str, zone: &str) -> FakeDns {
        FakeDns {
            name: name.to_string(),
            zone: dns_name(zone),
            state: Arc::default(),
        }
    }

    pub fn boxed(&self) -> Box<dyn DnsTarget> {
        Box::new(self.clone())
    }

    /// Puts an A RRset into the zone (as if made by hand: no ownership record).
    pub fn set_a(&self, name: &str, ttl: u32, addrs: &[&str]) {
        let set = a_set(name, ttl, addrs);
        self.state
            .lock()
            .unwrap()
            .rrsets
            .insert(set.key.clone(), set);
    }

    /// The addresses of the A RRset `name`, sorted; empty when there is none.
    pub fn a(&self, name: &str) -> Vec<IpAddr> {
        let key = a_key(name);
        let state = self.state.lock().unwrap();
        state
            .rrsets
            .get(&key)
            .map(|s| s.addrs.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every RRset of the zone.
    pub fn rrsets(&self) -> Vec<RecordSet> {
        self.state
            .lock()
            .unwrap()
            .rrsets
            .values()
            .cloned()
            .collect()
    }

    /// Reads (and zone listings) fail with `message` until [`Self::recover`].
    pub fn fail_reads(&self, message: &str) {
        self.state.lock().unwrap().read.fail = Some(message.to_string());
    }

    /// Writes fail with `message` until [`Self::recover`].
    pub fn fail_writes(&self, message: &str) {
        self.state.lock().unwrap().write.fail = Some(message.to_string());
    }

    /// Each read takes `delay` before it answers.
    pub fn slow_reads(&self, delay: Duration) {
        self.state.lock().unwrap().read.delay = delay;
    }

    /// Writes are acknowledged and change nothing, so they do not read back.
    pub fn lose_writes(&self) {
        self.state.lock().unwrap().lose_writes = true;
    }

    /// Every fault cleared.
    pub fn recover(&self) {
        let mut state = self.state.lock().unwrap();
        state.read = Fault::default();
        state.write = Fault::default();
        state.lose_writes = false;
    }

    /// When each read (or listing) started.
    pub fn reads(&self) -> Vec<Instant> {
        self.state.lock().unwrap().log.reads()
    }

    /// How many write batches were attempted, failed ones included.
    pub fn write_calls(&self) -> usize {
        self.state.lock().unwrap().log.writes()
    }

    /// The batches written and accepted (lost ones included), in order.
    pub fn batches(&self) -> Vec<Vec<RecordChange>> {
        self.state.lock().unwrap().batches.clone()
    }

    fn begin(&self, call: Call) -> Fault {
        let mut state = self.state.lock().unwrap();
        let fault = match call {
            Call::Read => state.read.clone(),
            Call::Write(_) => state.write.clone(),
        };
        state.log.push(call);
        fault
    }
}

impl DnsTarget for FakeDns {
    fn name(&self) -> &str {
        &self.name
    }

    fn zone(&self) -> &DnsName {
        &self.zone
    }

    fn read<'a>(&'a self, keys: &'a [RecordKey]) -> BoxFuture<'a, anyhow::Result<Vec<RecordSet>>> {
        let fault = self.begin(Call::Read);
        Box::pin(async move {
            fault.play().await?;
            let state = self.state.lock().unwrap();
            Ok(keys
                .iter()
                .filter_map(|k| state.rrsets.get(k).cloned())
                .collect())
        })
    }

    fn read_ownership(&self) -> BoxFuture<'_, anyhow::Result<BTreeMap<DnsName, String>>> {
        let fault = self.begin(Call::Read);
        Box::pin(async move {
            fault.play().await?;
            Ok(self.state.lock().unwrap().ownership.clone())
        })
    }

    fn write<'a>(&'a self, changes: &'a [RecordChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        let fault = self.begin(Call::Write(changes.len()));
        Box::pin(async move {
            fault.play().await?;
            let mut state = self.state.lock().unwrap();
            state.batches.push(changes.to_vec());
            if state.lose_writes {
                return Ok(());
            }
            for change in changes {
                match change {
                    RecordChange::Replace { to, .. } => {
                        state.rrsets.insert(to.key.clone(), to.clone());
                    }
                    RecordChange::Create { to, owner, .. } => {
                        state.rrsets.insert(to.key.clone(), to.clone());
                        state.ownership.insert(to.key.name.clone(), owner.clone());
                    }
                    RecordChange::Delete { from } => {
                        state.rrsets.remove(&from.key);
                        state.ownership.remove(&from.key.name);
                    }
                }
            }
            Ok(())
        })
    }
}

/// A load balancer held in memory: backends and their servers.
#[derive(Clone)]
pub struct FakeLb {
    name: String,
    state: Arc<Mutex<LbState>>,
}

#[derive(Default)]
struct LbState {
    backends: BTreeSet<String>,
    servers: BTreeMap<ServerKey, ObservedServer>,
    read: Fault,
    write: Fault,
    log: Log,
    batches: Vec<Vec<ServerChange>>,
}

impl FakeLb {
    /// A load balancer with these (empty) backends.
    pub fn new(name: &str, backends: &[&str]) -> FakeLb {
        let state = LbState {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            ..LbState::default()
        };
        FakeLb {
            name: name.to_string(),
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn boxed(&self) -> Box<dyn LoadBalancer> {
        Box::new(self.clone())
    }

    /// Puts (or replaces) server `backend/server` at `addr:port`.
    pub fn set_server(
        &self,
        backend: &str,
        server: &str,
        addr: &str,
        port: u16,
        admin: ServerAdmin,
    ) {
        let key = server_key(backend, server);
        let observed = ObservedServer {
            key: key.clone(),
            addr: Some(addr.parse().unwrap()),
            port,
            admin,
            durable: true,
        };
        self.state.lock().unwrap().servers.insert(key, observed);
    }

    /// Server `backend/server`, if there is one.
    pub fn server(&self, backend: &str, server: &str) -> Option<ObservedServer> {
        let key = server_key(backend, server);
        self.state.lock().unwrap().servers.get(&key).cloned()
    }

    /// Reads fail with `message` until [`Self::recover`].
    pub fn fail_reads(&self, message: &str) {
        self.state.lock().unwrap().read.fail = Some(message.to_string());
    }

    /// Writes fail with `message` until [`Self::recover`].
    pub fn fail_writes(&self, message: &str) {
        self.state.lock().unwrap().write.fail = Some(message.to_string());
    }

    /// Every fault cleared.
    pub fn recover(&self) {
        let mut state = self.state.lock().unwrap();
        state.read = Fault::default();
        state.write = Fault::default();
    }

    /// When each read started.
    pub fn reads(&self) -> Vec<Instant> {
        self.state.lock().unwrap().log.reads()
    }

    /// How many write batches were attempted, failed ones included.
    pub fn write_calls(&self) -> usize {
        self.state.lock().unwrap().log.writes()
    }

    /// The batches written and accepted, in order.
    pub fn batches(&self) -> Vec<Vec<ServerChange>> {
        self.state.lock().unwrap().batches.clone()
    }

    fn begin(&self, call: Call) -> Fault {
        let mut state = self.state.lock().unwrap();
        let fault = match call {
            Call::Read => state.read.clone(),
            Call::Write(_) => state.write.clone(),
        };
        state.log.push(call);
        fault
    }
}

impl LoadBalancer for FakeLb {
    fn name(&self) -> &str {
        &self.name
    }

    fn read<'a>(
        &'a self,
        backends: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<ObservedServer>>> {
        let fault = self.begin(Call::Read);
        Box::pin(async move {
            fault.play().await?;
            let state = self.state.lock().unwrap();
            if let Some(missing) = backends.iter().find(|b| !state.backends.contains(*b)) {
                bail!("no backend {missing:?}");
            }
            Ok(state
                .servers
                .values()
                .filter(|s| backends.contains(&s.key.backend))
                .cloned()
                .collect())
        })
    }

    fn write<'a>(&'a self, changes: &'a [ServerChange]) -> BoxFuture<'a, anyhow::Result<()>> {
        let fault = self.begin(Call::Write(changes.len()));
        Box::pin(async move {
            fault.play().await?;
            let mut state = self.state.lock().unwrap();
            state.batches.push(changes.to_vec());
            for change in changes {
                match change {
                    ServerChange::SetAddr { key, addr, port } => {
                        let Some(server) = state.servers.get_mut(key) else {
                            bail!("no server {key}");
                        };
                        server.addr = Some(*addr);
                        server.port = *port;
                    }
                    ServerChange::SetAdmin { key, admin } => {
                        let Some(server) = state.servers.get_mut(key) else {
                            bail!("no server {key}");
                        };
                        server.admin = *admin;
                    }
                    ServerChange::Add {
                        key, addr, port, ..
                    } => {
                        let server = ObservedServer {
                            key: key.clone(),
                            addr: Some(*addr),
                            port: *port,
                            admin: ServerAdmin::Maint,
                            durable: true,
                        };
                        state.servers.insert(key.clone(), server);
                    }
                    ServerChange::Delete { key } => {
                        state.servers.remove(key);
                    }
                }
            }
            Ok(())
        })
    }
}

/// The parts of a reconciler over these fakes.
pub fn parts(inventories: &[&FakeInventory], dns: &[&FakeDns], lbs: &[&FakeLb]) -> Parts {
    Parts {
        inventories: inventories.iter().map(|i| i.boxed()).collect(),
        dns: dns.iter().map(|d| d.boxed()).collect(),
        load_balancers: lbs.iter().map(|l| l.boxed()).collect(),
    }
}

/// A running instance with the given tags' `role`, public and private IPv4 address.
pub fn instance(id: &str, name: &str, role: &str, public: &str, private: &str) -> Instance {
    Instance {
        id: id.to_string(),
        name: name.to_string(),
        state: InstanceState::Running,
        public_ipv4: Some(public.parse().unwrap()),
        private_ipv4: Some(private.parse().unwrap()),
        ipv6: None,
        tags: BTreeMap::from([("role".to_string(), role.to_string())]),
    }
}

pub fn dns_name(text: &str) -> DnsName {
    ipdrift::validate::dns_name(text).unwrap()
}

pub fn a_key(name: &str) -> RecordKey {
    RecordKey {
        name: dns_name(name),
        rtype: RecordType::A,
    }
}

pub fn a_set(name: &str, ttl: u32, addrs: &[&str]) -> RecordSet {
    RecordSet {
        key: a_key(name),
        ttl,
        addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

pub fn server_key(backend: &str, server: &str) -> ServerKey {
    ServerKey {
        backend: backend.to_string(),
        server: server.to_string(),
    }
}
