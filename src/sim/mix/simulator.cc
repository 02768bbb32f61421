#include "sim/mix/simulator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <list>
#include <memory>
#include <numbers>
#include <optional>
#include <queue>
#include <utility>

#include "placement/ledger.h"
#include "placement/policy.h"
#include "sim/mix/contention.h"
#include "sim/mix/pool_cluster.h"

namespace tessera::sim::mix {
namespace {

namespace pl = tessera::placement;

constexpr double kEpsilon = 1e-9;
constexpr double kSecondsPerHour = 3600;

// SplitMix64: small, fast, and the same sequence on every platform and standard library (the
// std:: distributions are not), so a seed names one set of jobs everywhere.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double Between(const UniformRange& range) {
    return range.min + (range.max - range.min) * Uniform();
  }
  double Exponential(double rate) { return -std::log1p(-Uniform()) / rate; }
  double Normal() {
    const double radius = std::sqrt(-2 * std::log(1 - Uniform()));
    return radius * std::cos(2 * std::numbers::pi * Uniform());
  }

 private:
  uint64_t state_;
};

uint64_t StreamSeed(uint64_t seed, uint64_t stream) {
  Random mixer(seed ^ (0xd1b54a32d192ed03ULL * (stream + 1)));
  return mixer.Next();
}

Job DrawJob(Random& random, const JobClass& job_class, int class_index, double arrival_seconds) {
  Job job;
  job.class_index = class_index;
  job.arrival_seconds = arrival_seconds;
  const DurationSpec& duration = job_class.duration;
  double minutes = duration.median_minutes * std::exp(duration.sigma * random.Normal());
  minutes = std::clamp(minutes, duration.min_minutes, duration.max_minutes);
  job.natural_seconds = minutes * 60;
  job.busy = random.Between(job_class.busy_fraction);
  job.memory_gib = random.Between(job_class.memory_gib);
  return job;
}

enum class EventType { kArrival, kFinish, kOomKill, kRetry };

struct Event {
  double time = 0;
  uint64_t sequence = 0;  // ties are served in the order they were scheduled
  EventType type = EventType::kArrival;
  int subject = 0;       // job (arrival, retry) or run (finish, kill)
  uint64_t version = 0;  // a finish is stale when the run's version moved on
};

struct LaterFirst {
  bool operator()(const Event& a, const Event& b) const {
    return a.time > b.time || (a.time == b.time && a.sequence > b.sequence);
  }
};

// A GPU as the contention model sees it; what is free on it is the ledger's.
struct Gpu {
  int pool = 0;
  std::vector<int> runs;         // runs on this GPU
  double memory_in_use_gib = 0;  // time-slicing (nothing enforces it; jobs die past it)
};

struct Run {
  int job = 0;
  int pool = 0;
  pl::PlacementId placement = 0;
  std::vector<int> gpus;   // global GPU indices (node * gpus_per_node + GPU on the node)
  double held = 0;         // GPUs held (fraction or count)
  double mig_compute = 0;  // MIG: the instance's fraction of the GPU's compute slices
  double start = 0;
  double last_update = 0;
  double remaining = 0;  // natural seconds of work left
  double rate = 1;       // natural seconds done per wall second
  double busy = 0;       // what the contention model sees (0 for a job about to die)
  uint64_t version = 0;
  bool doomed = false;  // time-slicing: overfilled GPU memory, will be killed
};

struct ClassAccumulator {
  std::vector<double> queue_seconds;
  double stretch_sum = 0;
  double held_gpu_seconds = 0;
  double useful_gpu_seconds = 0;
  int failed_attempts = 0;
};

class Engine {
 public:
  // REQUIRES: `cluster` is BuildPoolCluster(scenario, strategy).
  Engine(const Scenario& scenario, const Strategy& strategy, pl::Cluster cluster,
         std::vector<Job> jobs)
      : scenario_(scenario),
        strategy_(strategy),
        jobs_(std::move(jobs)),
        ledger_(std::move(cluster)) {
    Build();
  }

  StrategyStats RunArrivals() {
    for (size_t i = 0; i < jobs_.size(); ++i) {
      Push(jobs_[i].arrival_seconds, EventType::kArrival, static_cast<int>(i), 0);
    }
    // A safety stop far beyond any sensible makespan, so a pathological scenario still ends.
    const double stop = scenario_.hours * kSecondsPerHour * 100 + 1e7;
    double last_end = 0;
    while (!events_.empty() && events_.top().time <= stop) {
      Event event = events_.top();
      events_.pop();
      now_ = event.time;
      switch (event.type) {
        case EventType::kArrival:
        case EventType::kRetry:
          if (!TryPlace(event.subject, -1)) queue_.push_back(event.subject);
          break;
        case EventType::kFinish:
          if (runs_[event.subject].version != event.version || !IsActive(event.subject)) break;
          last_end = now_;
          Complete(event.subject);
          break;
        case EventType::kOomKill:
          last_end = now_;
          Kill(event.subject);
          break;
      }
    }
    StrategyStats stats;
    stats.strategy = strategy_.name;
    stats.gpus = static_cast<int>(gpus_.size());
    stats.makespan_hours = last_end / kSecondsPerHour;
    stats.unfinished_jobs = static_cast<int>(queue_.size()) + active_runs_;
    for (size_t c = 0; c < scenario_.classes.size(); ++c) {
      ClassStats& out = stats.classes.emplace_back();
      ClassAccumulator& in = accumulators_[c];
      out.name = scenario_.classes[c].name;
      out.jobs = static_cast<int>(std::count_if(jobs_.begin(), jobs_.end(), [&](const Job& job) {
        return job.class_index == static_cast<int>(c);
      }));
      out.completed = static_cast<int>(in.queue_seconds.size());
      out.failed_attempts = in.failed_attempts;
      out.held_gpu_hours = in.held_gpu_seconds / kSecondsPerHour;
      out.useful_gpu_hours = in.useful_gpu_seconds / kSecondsPerHour;
      if (out.completed > 0) {
        double sum = 0;
        for (double seconds : in.queue_seconds) sum += seconds;
        out.mean_queue_hours = sum / out.completed / kSecondsPerHour;
        std::vector<double> sorted = in.queue_seconds;
        const size_t rank =
            static_cast<size_t>(std::ceil(0.95 * static_cast<double>(sorted.size()))) - 1;
        std::nth_element(sorted.begin(), sorted.begin() + static_cast<long>(rank), sorted.end());
        out.p95_queue_hours = sorted[rank] / kSecondsPerHour;
        out.mean_stretch = in.stretch_sum / out.completed;
      }
    }
    return stats;
  }

  // The sweep's measurement: a backlog that never empties, strict FIFO.
  SweepPoint RunSaturated(int denominator, uint64_t seed, double warmup_seconds,
                          double window_seconds) {
    saturated_ = true;
    source_ = Random(seed);
    for (int c : strategy_.pools.front().classes) {
      total_rate_ += scenario_.classes[c].arrivals_per_hour;
    }
    window_start_ = warmup_seconds;
    const double stop = warmup_seconds + window_seconds;
    head_ = DrawBacklogJob();
    FillFromBacklog(-1);
    while (!events_.empty() && events_.top().time <= stop) {
      Event event = events_.top();
      events_.pop();
      Integrate(event.time);
      now_ = event.time;
      if (event.type == EventType::kFinish && runs_[event.subject].version == event.version &&
          IsActive(event.subject)) {
        Complete(event.subject);
      }
    }
    Integrate(stop);
    SweepPoint point;
    point.denominator = denominator;
    const double hours = window_seconds / kSecondsPerHour;
    point.jobs_per_hour = window_completed_ / hours;
    point.useful_gpu_hours_per_hour = window_useful_seconds_ / kSecondsPerHour / hours;
    point.mean_stretch = window_completed_ > 0 ? window_stretch_sum_ / window_completed_ : 0;
    point.mean_jobs_per_busy_gpu =
        occupied_gpu_seconds_ > 0 ? tenant_seconds_ / occupied_gpu_seconds_ : 0;
    return point;
  }

 private:
  void Build() {
    const pl::Cluster& cluster = ledger_.cluster();
    pl::PolicyOptions options;
    options.seed = scenario_.seed;
    Result<std::unique_ptr<pl::Policy>> policy = pl::MakePolicy(kMixPolicy, cluster, options);
    policy_ = std::move(policy).value();  // kMixPolicy is one of the engine's names
    class_pools_.assign(scenario_.classes.size(), {});
    pool_nodes_.assign(strategy_.pools.size(), std::vector<bool>(cluster.node_count(), false));
    only_node_.assign(cluster.node_count(), false);
    size_t node = 0;
    for (size_t p = 0; p < strategy_.pools.size(); ++p) {
      const Pool& pool = strategy_.pools[p];
      for (int c : pool.classes) class_pools_[c].push_back(static_cast<int>(p));
      for (int n = 0; n < pool.nodes; ++n, ++node) {
        pool_nodes_[p][node] = true;
        node_pool_.push_back(static_cast<int>(p));
        for (int g = 0; g < scenario_.gpus_per_node; ++g) {
          gpus_.emplace_back().pool = static_cast<int>(p);
        }
      }
    }
    accumulators_.assign(scenario_.classes.size(), {});
  }

  void Push(double time, EventType type, int subject, uint64_t version) {
    events_.push(Event{time, next_sequence_++, type, subject, version});
  }

  bool IsActive(int run) const { return run_active_[run]; }

  double MemoryNeed(const Job& job) const {
    return job.memory_gib + scenario_.overheads.context_memory_gib;
  }

  int NodeOf(int gpu) const { return gpu / scenario_.gpus_per_node; }

  // Nothing more fits a node whose GPUs have no free share left, whatever their mode.
  bool NodeFull(int node) const {
    return ledger_.cluster().state(static_cast<size_t>(node)).free_gpu_milli == 0;
  }

  // Asks the engine, as tessera-scheduler does: the job's request in each of its pools in order,
  // the pool's nodes as the candidates, the policy's choice charged to the ledger. `only_node`
  // >= 0 restricts the candidates to that node (the only one whose room grew since the job last
  // failed to fit).
  bool TryPlace(int job_index, int only_node) {
    const Job& job = jobs_[job_index];
    const pl::Cluster& cluster = ledger_.cluster();
    for (int pool : class_pools_[job.class_index]) {
      if (only_node >= 0 && node_pool_[only_node] != pool) continue;
      const pl::Request request = JobRequest(scenario_, strategy_.pools[pool], job);
      pl::Demand demand = pl::CompileDemand(cluster, request);
      demand.shares_only = request.gpu_milli != pl::kMilliPerGpu;
      if (only_node >= 0) only_node_[only_node] = true;
      demand.candidate_nodes = only_node >= 0 ? &only_node_ : &pool_nodes_[pool];
      policy_->Observe(demand);
      std::optional<pl::Assignment> choice = policy_->Choose(cluster, demand);
      if (only_node >= 0) only_node_[only_node] = false;
      if (!choice.has_value()) continue;
      // The policy only proposes what fits, so the ledger accepts it.
      Result<pl::PlacementId> placed = ledger_.Place(demand, *choice);
      if (!placed.ok()) continue;
      Start(job_index, pool, *placed);
      return true;
    }
    return false;
  }

  // The fraction of a GPU a placement holds, by the definitions of simulator.h: whole GPUs their
  // count, a share its charge, a MIG instance its compute slices, a time-slice replica 1/replicas.
  double Held(const Pool& pool, const pl::Placement& placement, double mig_compute) const {
    switch (pool.mode) {
      case pl::SharingMode::kWhole:
        return static_cast<double>(placement.charges.size());
      case pl::SharingMode::kShared:
        return static_cast<double>(placement.charges[0].milli) / pl::kMilliPerGpu;
      case pl::SharingMode::kMig:
        return mig_compute;
      case pl::SharingMode::kTimeSliced:
        return 1.0 / pool.replicas;
    }
    return 0;
  }

  void Start(int job_index, int pool_index, pl::PlacementId placement_id) {
    const Job& job = jobs_[job_index];
    const Pool& pool = strategy_.pools[pool_index];
    const pl::Placement& placement = ledger_.placement(placement_id);
    const int run_index = static_cast<int>(runs_.size());
    Run& run = runs_.emplace_back();
    run_active_.push_back(true);
    ++active_runs_;
    run.job = job_index;
    run.pool = pool_index;
    run.placement = placement_id;
    for (const pl::GpuCharge& charge : placement.charges) {
      run.gpus.push_back(static_cast<int>(placement.node) * scenario_.gpus_per_node + charge.gpu);
    }
    if (pool.mode == pl::SharingMode::kMig) {
      const MigProfile& profile =
          scenario_.mig.profiles[pool.mig_geometry[placement.charges[0].mig_slice]];
      run.mig_compute = static_cast<double>(profile.compute_slices) / scenario_.mig.compute_slices;
    }
    run.held = Held(pool, placement, run.mig_compute);
    run.start = now_;
    run.last_update = now_;
    run.remaining = job.natural_seconds;
    run.busy = job.busy;
    for (int g : run.gpus) {
      if (gpus_[g].runs.empty()) ++occupied_gpus_;
      ++tenants_;
      gpus_[g].runs.push_back(run_index);
    }
    switch (pool.mode) {
      case pl::SharingMode::kWhole: {
        const double cpus = scenario_.classes[job.class_index].cpus;
        const double available = scenario_.CpusPerGpu() * static_cast<double>(run.gpus.size());
        SetRate(run_index, ProgressRate(job.busy, 1, HostSpeed(available, cpus)));
        break;
      }
      case pl::SharingMode::kTimeSliced: {
        Gpu& gpu = gpus_[run.gpus[0]];
        if (gpu.memory_in_use_gib + MemoryNeed(job) > scenario_.gpu_memory_gib + kEpsilon) {
          // Nothing stopped the placement; the job's allocations fail once it starts.
          run.doomed = true;
          run.busy = 0;
          Push(now_ + scenario_.time_slicing.oom_after_minutes * 60, EventType::kOomKill, run_index,
               0);
        } else {
          gpu.memory_in_use_gib += MemoryNeed(job);
        }
        UpdateSharedGpu(run.gpus[0]);
        break;
      }
      case pl::SharingMode::kMig:
      case pl::SharingMode::kShared:
        UpdateSharedGpu(run.gpus[0]);
        break;
    }
  }

  // Brings the run's progress up to now, then sets its rate and reschedules its end.
  void SetRate(int run_index, double rate) {
    Run& run = runs_[run_index];
    run.remaining = std::max(0.0, run.remaining - run.rate * (now_ - run.last_update));
    run.last_update = now_;
    run.rate = rate;
    ++run.version;
    if (!run.doomed) Push(now_ + run.remaining / rate, EventType::kFinish, run_index, run.version);
  }

  // Host phases slow in proportion when the jobs ask for more cores than there are.
  static double HostSpeed(double available_cpus, double demanded_cpus) {
    if (demanded_cpus <= available_cpus || available_cpus <= 0) return 1;
    return available_cpus / demanded_cpus;
  }

  // Recomputes every tenant's rate on a GPU that several jobs use (shares, time-slicing, MIG).
  void UpdateSharedGpu(int g) {
    const Gpu& gpu = gpus_[g];
    if (gpu.runs.empty()) return;
    double cpus = 0;
    for (int r : gpu.runs) cpus += scenario_.classes[jobs_[runs_[r].job].class_index].cpus;
    const double host_speed = HostSpeed(scenario_.CpusPerGpu(), cpus);
    const Pool& pool = strategy_.pools[gpu.pool];
    if (pool.mode == pl::SharingMode::kMig) {
      // Hardware slices: a fixed fraction of the SMs, nobody else's work in them; only the host
      // side is shared.
      const std::vector<int> runs = gpu.runs;
      for (int r : runs) SetRate(r, ProgressRate(runs_[r].busy, runs_[r].mig_compute, host_speed));
      return;
    }
    const bool shares = pool.mode == pl::SharingMode::kShared;
    const Overheads& overheads = scenario_.overheads;
    const double cotenants = static_cast<double>(gpu.runs.size() - 1);
    double slowdown = 1 + overheads.interference_per_cotenant * cotenants;
    if (shares) slowdown *= 1 + overheads.shim_slowdown;
    std::vector<Tenant> tenants;
    tenants.reserve(gpu.runs.size());
    for (int r : gpu.runs) {
      const Run& run = runs_[r];
      Tenant tenant;
      tenant.busy = run.busy;
      tenant.weight = shares ? run.held : 1;  // time-slicing: equal time per context
      tenant.cap = shares && scenario_.compute_policy == ComputePolicy::kCapped ? run.held : 1;
      tenant.slowdown = slowdown;
      tenant.host_speed = host_speed;
      tenants.push_back(tenant);
    }
    const std::vector<double> rates = ProgressRates(tenants);
    const std::vector<int> runs = gpu.runs;
    for (size_t i = 0; i < runs.size(); ++i) SetRate(runs[i], rates[i]);
  }

  void Release(int run_index) {
    Run& run = runs_[run_index];
    const Job& job = jobs_[run.job];
    run_active_[run_index] = false;
    --active_runs_;
    run.remaining = std::max(0.0, run.remaining - run.rate * (now_ - run.last_update));
    run.last_update = now_;
    accumulators_[job.class_index].held_gpu_seconds += run.held * (now_ - run.start);
    Status released = ledger_.Release(run.placement);
    (void)released;  // the id is live: this run holds it, and only here is it released
    for (int g : run.gpus) {
      Gpu& gpu = gpus_[g];
      gpu.runs.erase(std::find(gpu.runs.begin(), gpu.runs.end(), run_index));
      --tenants_;
      if (gpu.runs.empty()) --occupied_gpus_;
      if (strategy_.pools[run.pool].mode == pl::SharingMode::kTimeSliced && !run.doomed) {
        gpu.memory_in_use_gib -= MemoryNeed(job);
      }
    }
  }

  void AfterRelease(const std::vector<int>& gpus) {
    for (int g : gpus) {
      if (strategy_.pools[gpus_[g].pool].mode != pl::SharingMode::kWhole) UpdateSharedGpu(g);
    }
    // A run's GPUs are all on one node, the only node that gained room.
    const int node = NodeOf(gpus.front());
    if (saturated_) {
      FillFromBacklog(node);
    } else {
      DrainQueueOnto(node);
    }
  }

  void Complete(int run_index) {
    Release(run_index);
    const Run& run = runs_[run_index];
    const Job& job = jobs_[run.job];
    ClassAccumulator& accumulator = accumulators_[job.class_index];
    const double queue_seconds = run.start - job.arrival_seconds;
    const double stretch = (now_ - run.start) / job.natural_seconds;
    accumulator.queue_seconds.push_back(queue_seconds);
    accumulator.stretch_sum += stretch;
    const double useful = job.busy * job.natural_seconds * scenario_.classes[job.class_index].gpus;
    accumulator.useful_gpu_seconds += useful;
    if (saturated_ && now_ >= window_start_) {
      window_completed_ += 1;
      window_stretch_sum_ += stretch;
      window_useful_seconds_ += useful;
    }
    // A copy: starting the next jobs grows runs_ and would move `run`.
    const std::vector<int> gpus = run.gpus;
    AfterRelease(gpus);
  }

  void Kill(int run_index) {
    Release(run_index);
    const Run& run = runs_[run_index];
    accumulators_[jobs_[run.job].class_index].failed_attempts += 1;
    Push(now_ + scenario_.time_slicing.retry_backoff_minutes * 60, EventType::kRetry, run.job, 0);
    const std::vector<int> gpus = run.gpus;
    AfterRelease(gpus);
  }

  // Every waiting job fitted nowhere when it was queued, and only `node` has gained room since,
  // so trying that node alone, in arrival order, is the full greedy-backfill pass.
  void DrainQueueOnto(int node) {
    for (auto it = queue_.begin(); it != queue_.end() && !NodeFull(node);) {
      if (TryPlace(*it, node)) {
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
  }

  int DrawBacklogJob() {
    double pick = source_.Uniform() * total_rate_;
    const std::vector<int>& classes = strategy_.pools.front().classes;
    int chosen = classes.back();
    for (int c : classes) {
      pick -= scenario_.classes[c].arrivals_per_hour;
      if (pick < 0) {
        chosen = c;
        break;
      }
    }
    jobs_.push_back(DrawJob(source_, scenario_.classes[chosen], chosen, now_));
    return static_cast<int>(jobs_.size()) - 1;
  }

  // Strict FIFO from the backlog: the head job starts if it fits, then the next, and so on.
  void FillFromBacklog(int node) {
    if (node >= 0) {
      if (!TryPlace(head_, node)) return;
      head_ = DrawBacklogJob();
    }
    while (TryPlace(head_, -1)) head_ = DrawBacklogJob();
  }

  // Time integrals for the sweep's jobs-per-GPU figure, over the measured window only.
  void Integrate(double until) {
    const double from = std::max(now_, window_start_);
    if (until <= from) return;
    tenant_seconds_ += tenants_ * (until - from);
    occupied_gpu_seconds_ += occupied_gpus_ * (until - from);
  }

  const Scenario& scenario_;
  const Strategy& strategy_;
  std::vector<Job> jobs_;
  std::vector<Gpu> gpus_;
  std::vector<std::vector<int>> class_pools_;
  // Placement: the engine's ledger and policy, and per pool its nodes as a candidate mask.
  pl::Ledger ledger_;
  std::unique_ptr<pl::Policy> policy_;
  std::vector<std::vector<bool>> pool_nodes_;
  std::vector<bool> only_node_;  // all false between placements
  std::vector<int> node_pool_;
  std::vector<Run> runs_;
  std::vector<bool> run_active_;
  int active_runs_ = 0;
  double tenants_ = 0;        // runs summed over GPUs (a gang job counts once per GPU)
  double occupied_gpus_ = 0;  // GPUs with at least one run
  std::list<int> queue_;
  std::priority_queue<Event, std::vector<Event>, LaterFirst> events_;
  uint64_t next_sequence_ = 0;
  double now_ = 0;
  std::vector<ClassAccumulator> accumulators_;

  // Saturated (sweep) mode.
  bool saturated_ = false;
  Random source_{0};
  double total_rate_ = 0;
  int head_ = -1;
  double window_start_ = 0;
  double window_completed_ = 0;
  double window_stretch_sum_ = 0;
  double window_useful_seconds_ = 0;
  double tenant_seconds_ = 0;
  double occupied_gpu_seconds_ = 0;
};

}  // namespace

std::vector<Job> GenerateJobs(const Scenario& scenario, uint64_t seed) {
  std::vector<Job> jobs;
  const double horizon = scenario.hours * kSecondsPerHour;
  for (size_t c = 0; c < scenario.classes.size(); ++c) {
    const JobClass& job_class = scenario.classes[c];
    if (job_class.arrivals_per_hour <= 0) continue;
    Random random(StreamSeed(seed, c));
    const double rate = job_class.arrivals_per_hour / kSecondsPerHour;
    for (double t = random.Exponential(rate); t < horizon; t += random.Exponential(rate)) {
      jobs.push_back(DrawJob(random, job_class, static_cast<int>(c), t));
    }
  }
  std::stable_sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) {
    return a.arrival_seconds < b.arrival_seconds;
  });
  return jobs;
}

double StrategyStats::HeldGpuHours() const {
  double total = 0;
  for (const ClassStats& c : classes) total += c.held_gpu_hours;
  return total;
}

double StrategyStats::UsefulGpuHours() const {
  double total = 0;
  for (const ClassStats& c : classes) total += c.useful_gpu_hours;
  return total;
}

double StrategyStats::ClusterUtilisation() const {
  const double available = gpus * makespan_hours;
  return available > 0 ? UsefulGpuHours() / available : 0;
}

StrategyStats SimulateStrategy(const Scenario& scenario, const Strategy& strategy,
                               const std::vector<Job>& jobs) {
  Result<pl::Cluster> cluster = BuildPoolCluster(scenario, strategy);
  if (!cluster.ok()) {
    // Only a scenario changed after ParseScenario checked it gets here: nothing can run.
    StrategyStats stats;
    stats.strategy = strategy.name;
    stats.unfinished_jobs = static_cast<int>(jobs.size());
    return stats;
  }
  Engine engine(scenario, strategy, std::move(cluster).value(), jobs);
  return engine.RunArrivals();
}

std::vector<SweepPoint> SweepPartitions(const Scenario& scenario, uint64_t seed) {
  std::vector<SweepPoint> points;
  for (int k : scenario.sweep.partitions) {
    Scenario partitioned = scenario;
    for (int c : scenario.sweep.classes) partitioned.classes[c].share = 1.0 / k;
    Strategy strategy;
    strategy.name = "partitions of 1/" + std::to_string(k);
    Pool& pool = strategy.pools.emplace_back();
    pool.name = "swept";
    pool.mode = pl::SharingMode::kShared;
    pool.nodes = scenario.sweep.nodes;
    pool.classes = scenario.sweep.classes;
    Result<pl::Cluster> cluster = BuildPoolCluster(partitioned, strategy);
    if (!cluster.ok()) {
      points.emplace_back().denominator = k;
      continue;
    }
    Engine engine(partitioned, strategy, std::move(cluster).value(), {});
    // The same backlog for every partition size (common random numbers).
    points.push_back(engine.RunSaturated(k, StreamSeed(seed, 1000),
                                         scenario.sweep.warmup_hours * kSecondsPerHour,
                                         scenario.sweep.hours * kSecondsPerHour));
  }
  return points;
}

}  // namespace tessera::sim::mix
