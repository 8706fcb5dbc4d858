// The agent's status page: one self-contained HTML document (inline CSS and JavaScript, nothing
// loaded from elsewhere) that the metrics listener serves at "/". Thread safety: returns a view
// of a constant; safe from any thread.
#pragma once

#include <string_view>

namespace mlk::metrics {

// The page reads, with URLs relative to its own (so it works behind a reverse-proxy prefix that
// ends in '/'), every 15 s:
//   GET api/dashboard/summary -> application/json:
//     {"host", "version", "generated_at" (RFC 3339), "uptime_seconds",
//      "gpus": [{"id", "name", "uuid", "temp", "util_gpu" (0-100), "mem_used_bytes",
//                "mem_total_bytes", "power_draw_w", "power_limit_w",
//                "status": "ok|warning|critical", "findings": [strings]}],  (numbers may be null)
//      "health": {"at" (RFC 3339 or null), "score" (0-100 or null),
//                 "checks": [{"check", "status": "pass|warn|fail", "message"}]},
//      "backups": [{"at", "archive", "kind": "full|incremental", "bytes_out", "files",
//                   "seconds", "verified", "ok", "error"}],
//      "schedule": [{"job", "next" (or null), "last" (or null), "last_outcome" (or null),
//                    "last_duration_seconds", "running"}],
//      "models": [{"name", "state", "requests", "in_flight", "idle_seconds" (or null)}],
//      "alerts": [{"key", "state": "firing|resolved", "severity", "summary", "last_seen"}]}
//   GET charts/gpu/{temp|util|memory|power}.svg?range=1h|24h|7d&_=<cache buster>
//     -> image/svg+xml from render_line_chart(); fetched as text and inlined.
// Every request carries "Authorization: Bearer TOKEN" once the user has entered a token, which
// the page asks for (and keeps in sessionStorage) when a request answers 401.
// For tests: after a complete render body.dataset.ready is "1"; failures (HTTP errors, bad JSON,
// script errors, unhandled rejections) are shown in a banner and appended to
// body.dataset.errors, a JSON array of strings ("[]" when there were none).
// The page needs inline <script> and <style>: a Content-Security-Policy on this route must allow
// 'unsafe-inline' (or carry the hashes).
std::string_view dashboard_html();

}  // namespace mlk::metrics
