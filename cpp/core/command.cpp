#include "core/command.h"

#include <algorithm>

#include "core/errors.h"

namespace mpsnn {

CommandBuffer::CommandBuffer(std::shared_ptr<CommandQueue> queue) : queue_(std::move(queue)) {}
CommandBuffer::~CommandBuffer() = default;

const DevicePtr& CommandBuffer::device() const { return queue_->device(); }

CommandBufferStatus CommandBuffer::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_;
}

std::exception_ptr CommandBuffer::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

bool CommandBuffer::committed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return status_ >= CommandBufferStatus::committed;
}

void CommandBuffer::encode(Task task, const char* what) {
  std::lock_guard<std::mutex> lock(mutex_);
  MPSNN_CHECK(status_ < CommandBufferStatus::committed, GraphError, "[", what,
              "] the command buffer was already committed; encode into a new command buffer");
  tasks_.push_back(std::move(task));
  ++tasks_encoded_;
}

size_t CommandBuffer::tasks_encoded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_encoded_;
}

size_t CommandBuffer::tasks_run() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_run_;
}

void CommandBuffer::retain(std::shared_ptr<const void> object) {
  std::lock_guard<std::mutex> lock(mutex_);
  retained_.push_back(std::move(object));
}

void CommandBuffer::add_completed_handler(Handler handler) {
  std::lock_guard<std::mutex> lock(mutex_);
  MPSNN_CHECK(status_ < CommandBufferStatus::committed, GraphError,
              "[MTLCommandBuffer.add_completed_handler] handlers must be added before commit()");
  handlers_.push_back(std::move(handler));
}

void CommandBuffer::commit() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    MPSNN_CHECK(status_ < CommandBufferStatus::committed, GraphError,
                "[MTLCommandBuffer.commit] the command buffer was already committed");
    status_ = CommandBufferStatus::committed;
  }
  queue_->submit(shared_from_this());
}

void CommandBuffer::run_tasks(std::vector<Task>& tasks) {
  for (auto& t : tasks) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error_) break;  // later work depends on earlier results: skip it
    }
    try {
      t(queue_->stream());
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++tasks_run_;
  }
}

void CommandBuffer::abort(std::exception_ptr error) {
  std::lock_guard<std::mutex> lock(mutex_);
  MPSNN_CHECK(status_ < CommandBufferStatus::committed, GraphError,
              "[MPSCommandBuffer] cannot abort a committed command buffer");
  if (!error_) error_ = std::move(error);
}

void CommandBuffer::commit_and_continue() {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    MPSNN_CHECK(status_ < CommandBufferStatus::committed, GraphError,
                "[MPSCommandBuffer.commit_and_continue] the command buffer was already committed");
    tasks.swap(tasks_);
  }
  run_tasks(tasks);
}

void CommandBuffer::execute() {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = CommandBufferStatus::scheduled;
    tasks.swap(tasks_);
  }
  run_tasks(tasks);
  tasks.clear();
  // Handlers and releases wait for the device; a host stream calls back right away.
  queue_->stream().when_done([self = shared_from_this()] { self->complete(); });
}

void CommandBuffer::complete() {
  std::vector<Handler> handlers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = error_ ? CommandBufferStatus::error : CommandBufferStatus::completed;
    completion_status_->store(int(status_));
    handlers.swap(handlers_);
    handler_thread_ = std::this_thread::get_id();
  }
  for (auto& h : handlers) {
    try {
      h(*this);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      status_ = CommandBufferStatus::error;
    }
  }
  std::vector<std::shared_ptr<const void>> retained;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    handler_thread_ = std::thread::id();
    retained.swap(retained_);
  }
  retained.clear();  // release outside the lock: destructors may call back into Python
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
  }
  done_cv_.notify_all();
  auto& worker = *queue_->worker_;
  {
    std::lock_guard<std::mutex> lock(worker.mutex);
    ++worker.completed;
  }
  worker.cv.notify_all();
}

void CommandBuffer::abandon() {
  std::vector<Task> tasks;
  std::vector<Handler> handlers;  // not called: the process is exiting, callers may be gone
  {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = CommandBufferStatus::scheduled;
    tasks.swap(tasks_);
    handlers.swap(handlers_);
    if (!error_)
      error_ = std::make_exception_ptr(BackendError(
          "[MTLCommandBuffer] not run: the command queues were stopped because the process is exiting"));
  }
  tasks.clear();
  handlers.clear();
  complete();
}

void CommandBuffer::wait_until_completed() {
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    MPSNN_CHECK(status_ >= CommandBufferStatus::committed, GraphError,
                "[MTLCommandBuffer.wait_until_completed] the command buffer was never committed");
    if (handler_thread_ != std::this_thread::get_id()) done_cv_.wait(lock, [&] { return finished_; });
    if (error_ && !error_reported_) {
      error_reported_ = true;
      err = error_;
    }
  }
  if (err) std::rethrow_exception(err);
}

void CommandBuffer::wait_until_finished() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (handler_thread_ != std::this_thread::get_id()) done_cv_.wait(lock, [&] { return finished_; });
}

// ---------------------------------------------------------------------------------------------
namespace {
std::mutex g_workers_mutex;
std::vector<std::weak_ptr<detail::QueueWorker>> g_workers;
std::atomic<bool> g_queues_stopped{false};  // stop_all_queues

std::vector<std::shared_ptr<detail::QueueWorker>> live_workers() {
  std::vector<std::shared_ptr<detail::QueueWorker>> workers;
  std::lock_guard<std::mutex> lock(g_workers_mutex);
  for (auto& w : g_workers)
    if (auto s = w.lock()) workers.push_back(s);
  return workers;
}
}  // namespace

void detail::QueueWorker::loop(std::shared_ptr<QueueWorker> self) {
  for (;;) {
    CommandBufferPtr cb;
    {
      std::unique_lock<std::mutex> lock(self->mutex);
      self->cv.wait(lock, [&] { return self->stopping || !self->pending.empty(); });
      if (self->pending.empty()) return;
      cb = std::move(self->pending.front());
      self->pending.pop_front();
    }
    cb->execute();  // `completed` grows when the buffer completes (CommandBuffer::complete)
    cb.reset();
  }
}

CommandQueue::CommandQueue(DevicePtr device)
    : device_(std::move(device)), stream_(device_->make_stream()), worker_(std::make_shared<detail::QueueWorker>()) {
  std::lock_guard<std::mutex> lock(g_workers_mutex);
  g_workers.erase(std::remove_if(g_workers.begin(), g_workers.end(), [](auto& w) { return w.expired(); }),
                  g_workers.end());
  g_workers.push_back(worker_);
}

CommandQueue::~CommandQueue() {
  {
    std::lock_guard<std::mutex> lock(worker_->mutex);
    worker_->stopping = true;
  }
  worker_->cv.notify_all();
}

CommandBufferPtr CommandQueue::make_command_buffer() {
  return std::make_shared<CommandBuffer>(shared_from_this());
}

void CommandQueue::submit(CommandBufferPtr cb) {
  {
    std::lock_guard<std::mutex> lock(worker_->mutex);
    ++worker_->committed;
    if (!g_queues_stopped.load()) {
      worker_->pending.push_back(std::move(cb));
      if (!worker_->started) {
        worker_->started = true;
        std::thread(detail::QueueWorker::loop, worker_).detach();
      }
      worker_->cv.notify_all();
      return;
    }
  }
  cb->abandon();
}

namespace {
void drain_worker(detail::QueueWorker& w) {
  std::unique_lock<std::mutex> lock(w.mutex);
  const uint64_t target = w.committed;
  w.cv.wait(lock, [&] { return w.completed >= target; });
}
}  // namespace

void CommandQueue::drain() { drain_worker(*worker_); }

void drain_all_queues() {
  for (auto& w : live_workers()) drain_worker(*w);
}

void stop_all_queues() {
  g_queues_stopped.store(true);
  for (auto& w : live_workers()) {
    std::deque<CommandBufferPtr> pending;
    {
      std::lock_guard<std::mutex> lock(w->mutex);
      pending.swap(w->pending);
    }
    for (auto& cb : pending) cb->abandon();
    drain_worker(*w);  // the buffer the worker was running, if any
  }
}

}  // namespace mpsnn
