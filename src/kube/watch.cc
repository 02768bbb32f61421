#include "kube/watch.h"

#include <optional>

#include "common/log.h"

namespace tessera::kube {
namespace {

constexpr const char* kLog = "kube";

// Answers that the same request will get again, however long one waits.
bool IsPermanent(long code) {
  return code == 400 || code == 403 || code == 404 || code == 405 || code == 406 || code == 415 ||
         code == 422;
}

long CodeOf(const nlohmann::json& status) {
  auto code = status.find("code");
  return code != status.end() && code->is_number_integer() ? code->get<long>() : 0;
}

std::string MessageOf(const nlohmann::json& status) {
  auto message = status.find("message");
  return message != status.end() && message->is_string() ? message->get<std::string>() : "";
}

size_t ItemCount(const nlohmann::json& list) {
  auto items = list.find("items");
  return items != list.end() && items->is_array() ? items->size() : 0;
}

}  // namespace

Status ListWatch(Client& client, std::string_view collection_path, const WatchOptions& options,
                 const WatchHandlers& handlers, std::stop_token stop) {
  const std::string path(collection_path);
  Clock& clock = client.clock();
  Backoff backoff(options.retry);
  // Sleeps before the next try; false when stopped meanwhile.
  auto pause = [&](const char* what, const std::string& why,
                   std::optional<Milliseconds> retry_after = std::nullopt) {
    Milliseconds delay =
        backoff.NextDelay(Milliseconds(0), retry_after).value_or(options.retry.max_delay);
    log::Write(log::Level::kWarn, kLog, "watch %s: %s; %s in %lld ms", path.c_str(), why.c_str(),
               what, static_cast<long long>(delay.count()));
    return clock.SleepFor(delay, stop);
  };

  std::string version = options.resource_version;
  bool must_list = version.empty();
  while (!stop.stop_requested()) {
    if (must_list) {
      std::string target = WithQuery(path, {{"labelSelector", options.label_selector},
                                            {"fieldSelector", options.field_selector}});
      ApiResult list = client.Call("GET", target, nullptr, "application/json", stop);
      if (stop.stop_requested()) break;
      if (!list.ok()) {
        if (IsPermanent(list.code())) return list.status();
        if (!pause("listing again", list.status().message())) break;
        continue;
      }
      version = ResourceVersionOf(*list);
      if (version.empty()) {
        return Status::Error("GET " + target + ": the list has no metadata.resourceVersion");
      }
      log::Write(log::Level::kInfo, kLog, "watch %s: listed %zu objects at resourceVersion %s",
                 path.c_str(), ItemCount(*list), version.c_str());
      must_list = false;
      if (handlers.on_synced) handlers.on_synced(*list);
      if (stop.stop_requested()) break;
    }

    HttpRequest request;
    request.method = "GET";
    request.target =
        WithQuery(path, {{"watch", "true"},
                         {"resourceVersion", version},
                         {"allowWatchBookmarks", options.allow_bookmarks ? "true" : ""},
                         {"timeoutSeconds", std::to_string(options.timeout_seconds)},
                         {"labelSelector", options.label_selector},
                         {"fieldSelector", options.field_selector}});
    // A safety net for a server that neither sends nor closes: it should end the watch itself.
    request.timeout = Milliseconds((options.timeout_seconds + 30) * 1000LL);

    WatchStreamParser parser;
    std::optional<WatchEvent> error_event;
    Status stream_error;
    size_t delivered = 0;
    BodySink sink = [&](std::string_view bytes) {
      Status fed = parser.Feed(bytes, [&](WatchEvent&& event) {
        if (error_event) return;  // the stream is over after an ERROR
        if (event.type == EventType::kError) {
          error_event = std::move(event);
          return;
        }
        std::string event_version = ResourceVersionOf(event.object);
        if (!event_version.empty()) version = event_version;
        ++delivered;
        if (handlers.on_event) handlers.on_event(event);
      });
      if (!fed.ok()) stream_error = fed;
      return fed.ok() && !error_event && !stop.stop_requested();
    };
    auto started = clock.Now();
    HttpResponse response = client.transport().Send(request, &sink, stop);
    if (stop.stop_requested()) break;
    if (handlers.on_watch_ended) handlers.on_watch_ended();
    if (delivered > 0) backoff.Reset();

    if (error_event) {
      long code = CodeOf(error_event->object);
      std::string message = MessageOf(error_event->object);
      must_list = true;
      if (code == 410) {
        log::Write(log::Level::kInfo, kLog, "watch %s: %s (410 in an ERROR event); relisting",
                   path.c_str(), message.c_str());
        continue;
      }
      if (!pause("relisting", "ERROR event, code " + std::to_string(code) + ": " + message)) break;
      continue;
    }
    if (response.failure == TransportFailure::kNone && response.code == 410) {
      log::Write(log::Level::kInfo, kLog, "watch %s: %s; relisting", path.c_str(),
                 ErrorResult("GET", request.target, response).status().message().c_str());
      must_list = true;
      continue;
    }
    if (!stream_error.ok()) {
      if (!pause("watching again", stream_error.message() + "; resuming at " + version)) break;
      continue;
    }
    if (response.failure == TransportFailure::kNone && response.code >= 200 &&
        response.code < 300) {
      Status finished = parser.Finish();
      if (!finished.ok()) {
        log::Write(log::Level::kWarn, kLog, "watch %s: %s", path.c_str(),
                   finished.message().c_str());
      }
      log::Write(log::Level::kDebug, kLog,
                 "watch %s: the server ended the watch after %zu events; resuming at %s",
                 path.c_str(), delivered, version.c_str());
      // A server that ends every watch at once must not make this loop spin.
      if (delivered == 0 && clock.Now() - started < std::chrono::seconds(1) &&
          !pause("watching again", "the watch ended at once")) {
        break;
      }
      continue;
    }
    ApiResult error = ErrorResult("GET", request.target, response);
    if (response.failure == TransportFailure::kNone && IsPermanent(response.code)) {
      return error.status();
    }
    if (!pause("watching again", error.status().message(), ParseRetryAfter(response.retry_after))) {
      break;
    }
  }
  return Status::Ok();
}

void MirrorCollection(Client& client, std::string_view collection_path, const WatchOptions& options,
                      const MirrorHandlers& handlers, const std::stop_token& stop,
                      Milliseconds restart_after) {
  WatchHandlers watch;
  watch.on_synced = [&](const nlohmann::json& list) {
    std::vector<nlohmann::json> items;
    if (list.contains("items") && list["items"].is_array()) {
      items.assign(list["items"].begin(), list["items"].end());
    }
    handlers.replace(items);
  };
  watch.on_event = [&](const WatchEvent& event) {
    if (event.type == EventType::kBookmark || !event.object.is_object()) return;
    if (event.type == EventType::kDeleted) {
      handlers.remove(event.object);
    } else {
      handlers.upsert(event.object);
    }
  };
  while (!stop.stop_requested()) {
    Status status = ListWatch(client, collection_path, options, watch, stop);
    if (stop.stop_requested()) break;
    log::Write(log::Level::kError, "kube", "watch %.*s: %s; starting again in %lld s",
               static_cast<int>(collection_path.size()), collection_path.data(),
               status.message().c_str(), static_cast<long long>(restart_after.count() / 1000));
    client.clock().SleepFor(restart_after, stop);
  }
}

}  // namespace tessera::kube
