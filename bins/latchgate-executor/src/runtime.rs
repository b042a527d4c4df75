//! The runtime: one engine, every module compiled at start, a fresh store
//! per call with fuel, memory, epoch deadline and io budget, and a
//! concurrency limit. A call's failure is an [`Outcome`] with a
//! [`FailureClass`]; a [`RunError`] means nothing ran.

use crate::egress::{CachedResolver, EgressClient, EgressConfig, EgressSetupError, Resolve, SystemResolver};
use crate::grant::{GrantError, GrantKeys};
use crate::host::{CallState, MemoryCap, ProviderBindingsPre, Violation};
use crate::registry::{ExpectedDigests, ModuleRegistry, RegistryError};
use crate::secrets::{CallSecrets, CallSecretsError, SecretSource};
use crate::task::{FailureClass, Outcome, OutcomeResult, RunTask};
use latchgate_core::action::ResourceLimits;
use latchgate_core::manifest::SecretSpec;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
    UpdateDeadline,
};

/// Epoch tick period: the granularity of the wall-clock deadline, and how
/// long a guest computes before it yields its runtime thread to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Guest stack: deeper recursion traps (`stack overflow`).
const MAX_WASM_STACK: usize = 512 * 1024;
/// The fiber stack a guest runs on: its wasm stack plus room for host calls.
const ASYNC_STACK_SIZE: usize = 1024 * 1024;
/// Extra time the outer (tokio) timeout allows beyond the epoch deadline.
const OUTER_TIMEOUT_GRACE: Duration = Duration::from_millis(500);
const MAX_TIMEOUT_SECONDS: u32 = 300;

#[derive(Clone)]
pub struct RuntimeConfig {
    pub providers_dir: PathBuf,
    pub expected_digests: ExpectedDigests,
    pub grant_keys: GrantKeys,
    /// Revocation epoch at start; raise it with [`Runtime::set_revocation_epoch`].
    pub revocation_epoch: u64,
    /// Calls running at once; more wait for a slot.
    pub max_concurrent_calls: u32,
    /// Ceiling for any manifest's `memory_mb` (also the pooling allocator's slot size).
    pub max_memory_mb: u32,
    /// Largest provider output accepted, in bytes.
    pub max_output_bytes: usize,
    pub egress: EgressConfig,
    /// Name resolution for egress; `None` = the system resolver.
    pub resolver: Option<Arc<dyn Resolve>>,
    /// How each action's secrets are injected, from the executor's own
    /// reading of the manifests (never from the broker's task).
    pub action_secrets: ActionSecrets,
    /// The signer, who releases a grant's secrets; `None` = no secret can be obtained.
    pub secret_source: Option<Arc<dyn SecretSource>>,
}

/// Secret specs by action id.
pub type ActionSecrets = HashMap<String, Vec<SecretSpec>>;

impl RuntimeConfig {
    pub fn new(providers_dir: impl Into<PathBuf>, expected_digests: ExpectedDigests, grant_keys: GrantKeys) -> Self {
        RuntimeConfig {
            providers_dir: providers_dir.into(),
            expected_digests,
            grant_keys,
            revocation_epoch: 0,
            max_concurrent_calls: 16,
            max_memory_mb: 256,
            max_output_bytes: 1024 * 1024,
            egress: EgressConfig::default(),
            resolver: None,
            action_secrets: ActionSecrets::new(),
            secret_source: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeInitError {
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Egress(#[from] EgressSetupError),
    #[error("epoch ticker thread: {0}")]
    Ticker(std::io::Error),
}

impl RuntimeInitError {
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeInitError::Engine(_) => "engine_init_failed",
            RuntimeInitError::Registry(e) => e.code(),
            RuntimeInitError::Egress(e) => e.code(),
            RuntimeInitError::Ticker(_) => "epoch_ticker_failed",
        }
    }
}

/// Refusals before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("no compiled module with digest {0}")]
    UnknownModule(String),
    #[error("invalid task: {0}")]
    InvalidTask(String),
    #[error("the runtime is shutting down")]
    ShuttingDown,
    #[error("internal: {0}")]
    Internal(String),
    #[error("required secret {0} is not approved by the grant")]
    SecretNotApproved(String),
    #[error("required secret {0} was not released by the signer")]
    SecretMissing(String),
    #[error("the signer released no secrets: {code}: {message}")]
    SecretsRefused { code: String, message: String },
}

impl RunError {
    pub fn code(&self) -> &'static str {
        match self {
            RunError::Grant(e) => e.code(),
            RunError::UnknownModule(_) => "module_unknown",
            RunError::InvalidTask(_) => "task_invalid",
            RunError::ShuttingDown => "runtime_shutting_down",
            RunError::Internal(_) => "runtime_internal",
            RunError::SecretNotApproved(_) => "secret_not_approved",
            RunError::SecretMissing(_) => "secret_missing",
            RunError::SecretsRefused { .. } => "secrets_refused",
        }
    }
}

/// What was prepared before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealReport {
    pub modules: usize,
    pub epoch_ticker_running: bool,
}

pub struct Runtime {
    engine: Engine,
    registry: ModuleRegistry,
    egress: Arc<EgressClient>,
    grant_keys: std::sync::RwLock<GrantKeys>,
    revocation_epoch: AtomicU64,
    slots: Arc<Semaphore>,
    max_memory_mb: u32,
    max_output_bytes: usize,
    ticker_stop: Arc<AtomicBool>,
    action_secrets: ActionSecrets,
    secret_source: Option<Arc<dyn SecretSource>>,
}

impl Runtime {
    /// Builds the engine, digest-checks, compiles and pre-links every module,
    /// and starts the epoch ticker thread. Everything that needs `PROT_EXEC`
    /// or a new thread of its own happens here.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeInitError> {
        let engine = build_engine(&config)?;
        let registry = ModuleRegistry::load(&engine, &config.providers_dir, &config.expected_digests)?;
        let resolver = config
            .resolver
            .clone()
            .unwrap_or_else(|| Arc::new(CachedResolver::new(SystemResolver, config.egress.dns_cache)));
        let egress = Arc::new(EgressClient::with_resolver(config.egress.clone(), resolver)?);
        if !config.egress.allow_private_destinations.is_empty() {
            tracing::warn!(destinations = ?config.egress.allow_private_destinations,
                "TEST-ONLY allow_private_destinations is configured: private addresses are reachable");
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), ticker_stop.clone()).map_err(RuntimeInitError::Ticker)?;
        Ok(Runtime {
            engine,
            registry,
            egress,
            grant_keys: std::sync::RwLock::new(config.grant_keys),
            revocation_epoch: AtomicU64::new(config.revocation_epoch),
            slots: Arc::new(Semaphore::new(config.max_concurrent_calls.max(1) as usize)),
            max_memory_mb: config.max_memory_mb,
            max_output_bytes: config.max_output_bytes,
            ticker_stop,
            action_secrets: config.action_secrets,
            secret_source: config.secret_source,
        })
    }

    /// Everything is compiled and the ticker runs: the caller may now install
    /// the seccomp filter that forbids new executable mappings. No code path
    /// after `new` compiles; calls only instantiate pre-linked components.
    pub fn seal_ready(&self) -> SealReport {
        SealReport { modules: self.registry.len(), epoch_ticker_running: !self.ticker_stop.load(Ordering::Relaxed) }
    }

    /// Replaces the grant verification keys (taken from the signer at start and on rotation).
    pub fn set_grant_keys(&self, keys: GrantKeys) {
        *self.grant_keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// Whether a grant signed by `kid` can be verified (else: ask the signer again).
    pub fn knows_grant_key(&self, kid: &str) -> bool {
        self.grant_keys.read().unwrap_or_else(|p| p.into_inner()).contains(kid)
    }

    /// Grants issued under an older epoch are refused from now on.
    pub fn set_revocation_epoch(&self, epoch: u64) {
        self.revocation_epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    pub fn revocation_epoch(&self) -> u64 {
        self.revocation_epoch.load(Ordering::SeqCst)
    }

    /// The secrets of this call: the action's specs (as the executor read
    /// them) that the grant approves, with the values the signer releases
    /// for the grant. A required secret that is not approved or not released
    /// refuses the task before anything runs.
    async fn call_secrets(&self, task: &RunTask) -> Result<CallSecrets, RunError> {
        let specs = self.action_secrets.get(&task.action_id).map(Vec::as_slice).unwrap_or_default();
        let approved = &task.grant.grant.approved_secrets;
        if let Some(spec) = specs.iter().find(|s| s.required && !approved.contains(&s.name)) {
            return Err(RunError::SecretNotApproved(spec.name.clone()));
        }
        let wanted: Vec<&SecretSpec> = specs.iter().filter(|s| approved.contains(&s.name)).collect();
        if wanted.is_empty() {
            return Ok(CallSecrets::none());
        }
        let Some(source) = &self.secret_source else {
            return Err(RunError::SecretsRefused { code: "no_secret_source".into(), message: "no signer link".into() });
        };
        let released = source
            .release(&task.grant)
            .await
            .map_err(|r| RunError::SecretsRefused { code: r.code, message: r.message })?;
        CallSecrets::new(&wanted, released).map_err(|CallSecretsError::Missing(name)| RunError::SecretMissing(name))
    }

    /// Verifies the grant and the task, then runs the provider once.
    pub async fn run(&self, task: RunTask) -> Result<Outcome, RunError> {
        let now = unix_now();
        self.grant_keys.read().unwrap_or_else(|p| p.into_inner()).verify(
            &task.grant,
            &task.module_digest,
            self.revocation_epoch(),
            now,
        )?;
        if task.grant.grant.action_id != task.action_id {
            return Err(GrantError::ActionMismatch {
                granted: task.grant.grant.action_id.clone(),
                requested: task.action_id.clone(),
            }
            .into());
        }
        let module = self
            .registry
            .get(&task.module_digest)
            .ok_or_else(|| RunError::UnknownModule(task.module_digest.clone()))?;
        check_limits(&task.limits, self.max_memory_mb)?;
        let provider_input = provider_input(&task)?;
        let pre = module.pre.clone();

        let declared: BTreeSet<_> = task.required_imports.iter().copied().collect();
        let undeclared: Vec<_> = module.imports.difference(&declared).collect();
        let base = Outcome {
            action_id: task.action_id.clone(),
            grant_id: task.grant.grant.grant_id.clone(),
            module_digest: task.module_digest.clone(),
            result: OutcomeResult::Succeeded { output_json: String::new() },
            io: Vec::new(),
            io_calls: 0,
            fuel_consumed: 0,
            duration_us: 0,
        };
        if !undeclared.is_empty() {
            tracing::warn!(action = %task.action_id, module = %module.file, ?undeclared, "import_denied");
            return Ok(Outcome {
                result: OutcomeResult::Failed {
                    class: FailureClass::ImportDenied,
                    detail: format!("module {} imports {undeclared:?}, not in required_imports", module.file),
                },
                ..base
            });
        }

        let permit = self.slots.clone().acquire_owned().await.map_err(|_| RunError::ShuttingDown)?;
        // Fetched once the call has a slot, so secrets are never held by a queued call.
        let secrets = self.call_secrets(&task).await?;
        let started = Instant::now();
        let timeout = Duration::from_secs(u64::from(task.limits.timeout_seconds));
        let state = CallState {
            memory: MemoryCap::new(
                StoreLimitsBuilder::new()
                    .memory_size(task.limits.memory_mb as usize * 1024 * 1024)
                    .instances(32)
                    .trap_on_grow_failure(true)
                    .build(),
            ),
            action_id: task.action_id.clone(),
            declared,
            io_calls: 0,
            max_io_calls: task.limits.max_io_calls,
            max_host_response_bytes: task.limits.max_host_response_bytes,
            deadline: started + timeout,
            egress: self.egress.clone(),
            egress_rules: task.egress.clone(),
            grant_sinks: task.grant.grant.allowed_sinks.clone(),
            fs_root: task.fs_root.clone(),
            observations: Vec::new(),
            violation: None,
            log_lines: 0,
            secrets,
        };
        let call = execute(&self.engine, &pre, state, task.limits.fuel, &provider_input, self.max_output_bytes);
        let finished = tokio::time::timeout(timeout + OUTER_TIMEOUT_GRACE, call).await;
        drop(permit);
        let outcome = match finished {
            Ok(done) => Outcome {
                result: done.result,
                io: done.observations,
                io_calls: done.io_calls,
                fuel_consumed: done.fuel_consumed,
                duration_us: micros(started.elapsed()),
                ..base
            },
            // The epoch deadline stops the guest; this covers a host call that outlives it.
            Err(_) => Outcome {
                result: failed(FailureClass::Timeout, "outer timeout".into()),
                duration_us: micros(started.elapsed()),
                ..base
            },
        };
        if let Some(class) = outcome.failure_class() {
            tracing::info!(action = %outcome.action_id, grant = %outcome.grant_id, class = class.code(), "call failed");
        }
        Ok(outcome)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

struct CallDone {
    result: OutcomeResult,
    observations: Vec<crate::task::IoObservation>,
    io_calls: u32,
    fuel_consumed: u64,
}

/// Instantiates the pre-linked component in a fresh store, calls `execute`
/// and classifies whatever happened. The guest runs on a fiber of the
/// calling task: it yields the thread at every epoch tick and while a host
/// call awaits the network, and traps at the first tick past the call's
/// deadline (the one its host calls are held to as well).
async fn execute(
    engine: &Engine,
    pre: &ProviderBindingsPre<CallState>,
    state: CallState,
    fuel: u64,
    input: &str,
    max_output: usize,
) -> CallDone {
    // Wall time, not ticks counted: a guest back from a long host call is
    // past its deadline at its next tick, as it would be with a fixed one.
    let deadline = state.deadline;
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline { Err(Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) }
    });
    let called = async {
        store.set_fuel(fuel)?;
        let provider = pre.instantiate_async(&mut store).await?;
        provider.call_execute(&mut store, input).await
    }
    .await;
    let fuel_consumed = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let state = store.into_data();
    let result = match called {
        Ok(Ok(output)) => check_output(output, max_output),
        Ok(Err(provider_error)) => failed(
            FailureClass::ProviderError,
            format!("{}: {}", provider_error.code, provider_error.message.chars().take(512).collect::<String>()),
        ),
        Err(error) => classify_error(&error, state.violation.as_ref(), state.memory.hit),
    };
    CallDone { result, observations: state.observations, io_calls: state.io_calls, fuel_consumed }
}

/// The host's own reason wins; then the memory cap; then the wasm trap code.
fn classify_error(error: &wasmtime::Error, violation: Option<&Violation>, memory_hit: bool) -> OutcomeResult {
    if let Some(v) = violation {
        return failed(v.class, v.detail.clone());
    }
    if memory_hit {
        return failed(FailureClass::MemoryLimit, format!("{error:#}"));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => failed(FailureClass::FuelExhausted, "fuel exhausted".into()),
        Some(Trap::Interrupt) => failed(FailureClass::Timeout, "epoch deadline reached".into()),
        Some(trap) => failed(FailureClass::Trap, trap.to_string()),
        None => failed(FailureClass::Trap, format!("{error:#}")),
    }
}

fn check_output(output: String, max_output: usize) -> OutcomeResult {
    if output.len() > max_output {
        return failed(FailureClass::OutputTooLarge, format!("{} bytes > {max_output}", output.len()));
    }
    match serde_json::from_str::<serde::de::IgnoredAny>(&output) {
        Ok(_) => OutcomeResult::Succeeded { output_json: output },
        Err(e) => failed(FailureClass::MalformedOutput, e.to_string()),
    }
}

fn failed(class: FailureClass, detail: String) -> OutcomeResult {
    OutcomeResult::Failed { class, detail }
}

fn check_limits(limits: &ResourceLimits, max_memory_mb: u32) -> Result<(), RunError> {
    let bad = |m: &str| Err(RunError::InvalidTask(m.into()));
    if limits.fuel == 0 {
        return bad("fuel must be positive");
    }
    if limits.memory_mb == 0 || limits.memory_mb > max_memory_mb {
        return bad("memory_mb out of range");
    }
    if limits.timeout_seconds == 0 || limits.timeout_seconds > MAX_TIMEOUT_SECONDS {
        return bad("timeout_seconds out of range");
    }
    Ok(())
}

/// `{"params": <object>, "template": <template or null>}` — the provider's only input.
fn provider_input(task: &RunTask) -> Result<String, RunError> {
    let params: serde_json::Value =
        serde_json::from_str(&task.params_json).map_err(|e| RunError::InvalidTask(format!("params_json: {e}")))?;
    if !params.is_object() {
        return Err(RunError::InvalidTask("params_json must be a JSON object".into()));
    }
    let input = serde_json::json!({ "params": params, "template": task.template });
    Ok(input.to_string())
}

fn build_engine(config: &RuntimeConfig) -> Result<Engine, RuntimeInitError> {
    let slots = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .max_core_instances_per_component(16)
        .total_memories(slots * 2)
        .max_memories_per_component(2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_tables_per_component(8)
        .max_memory_size(config.max_memory_mb as usize * 1024 * 1024);
    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK_SIZE)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| RuntimeInitError::Engine(format!("{e:#}")))
}

/// Advances the engine epoch every tick until the runtime is dropped. A
/// dedicated thread, started before sealing.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
        }
    })?;
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
