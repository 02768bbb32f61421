// List+watch of a collection, as an informer does it: list, hand the whole list over, then watch
// from the list's resourceVersion and hand over each change.
//
// - When the server ends a watch (it does after timeoutSeconds), the next one resumes from the
//   last resourceVersion seen (of an event or a bookmark), so no change is missed or repeated.
// - When that version is too old (HTTP 410, or an ERROR event with code 410: etcd compacted it
//   or it fell out of the watch cache), it lists again and calls on_synced with the new list;
//   whatever the caller built from earlier events must be rebuilt from that list.
// - Failures (connection, 429, 5xx, a malformed stream, other ERROR events) are logged and retried
//   with backoff for as long as it runs; responses that retrying cannot fix (400, 403, 404, ...)
//   end it with their error.
// - Stopping (the stop token) ends it promptly: an open stream is cut, a backoff sleep woken.
//
// The handlers run on the calling thread, in order. They may call the Client. An exception from a
// handler ends ListWatch and is rethrown to its caller.
#ifndef TESSERA_KUBE_WATCH_H_
#define TESSERA_KUBE_WATCH_H_

#include <functional>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kube/backoff.h"
#include "kube/client.h"
#include "kube/watch_stream.h"

namespace tessera::kube {

struct WatchOptions {
  std::string label_selector;
  std::string field_selector;  // "spec.nodeName=gpu-1"
  // Start watching from here without listing first (resuming a saved position). When the server
  // finds it too old, ListWatch lists after all. "": list first.
  std::string resource_version;
  int timeout_seconds = 300;  // the server ends each watch after this; ListWatch then resumes
  bool allow_bookmarks = true;
  BackoffPolicy retry{Milliseconds(200), 2.0, Milliseconds(30'000), 0.2, Milliseconds(0), 0};
};

struct WatchHandlers {
  // After each list, with the list object; list["items"] is the whole collection.
  std::function<void(const nlohmann::json& list)> on_synced;
  // ADDED, MODIFIED, DELETED and BOOKMARK events (never ERROR: those are handled here).
  std::function<void(const WatchEvent& event)> on_event;
  // Optional: one watch request ended (the server closed it or it failed); the next one follows.
  std::function<void()> on_watch_ended;
};

// Lists and watches `collection_path` (e.g. CollectionPath(kPods)) until `stop` is requested
// (then returns OK) or an error that retrying cannot fix.
Status ListWatch(Client& client, std::string_view collection_path, const WatchOptions& options,
                 const WatchHandlers& handlers, std::stop_token stop);

// For callers that keep a copy of a collection: the whole list after each list (replace), then
// each object added or changed (upsert) or deleted (remove); bookmarks are not passed on. Unlike
// ListWatch it never gives up: after an error retrying cannot fix (a 403 while RBAC is being
// fixed), it logs it and starts again `restart_after` later, until `stop` is requested.
struct MirrorHandlers {
  std::function<void(const std::vector<nlohmann::json>& items)> replace;
  std::function<void(const nlohmann::json& object)> upsert;
  std::function<void(const nlohmann::json& object)> remove;
};

void MirrorCollection(Client& client, std::string_view collection_path, const WatchOptions& options,
                      const MirrorHandlers& handlers, const std::stop_token& stop,
                      Milliseconds restart_after = Milliseconds(10'000));

}  // namespace tessera::kube

#endif  // TESSERA_KUBE_WATCH_H_
