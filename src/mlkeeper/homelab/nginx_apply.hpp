// Puts a rendered NGINX config in place safely: replace the live file only when the content
// changed, let nginx check it, reload, and put the old file back when the check fails.
// Thread safety: apply_nginx_config() may run in several threads and processes at once: an flock
// beside the live file serialises them (the agent's re-render and a CLI `mlkeeper nginx render`).
//
// The scheme (swap in, test, roll back), and why:
//   1. lock "<dir>/.<name>.lock";
//   2. if "<dir>/.<name>.mlkeeper-old" (or "...-absent") is there, an earlier apply died between
//      steps 5 and 7: put the old file back first, as step 7 would have;
//   3. read the live file; same bytes as the candidate -> kUnchanged (nothing run, no reload);
//   4. (a dry run skips steps 1-2, reads without a lock and returns kUnchanged or kWouldChange
//      with a unified diff; against the backup when step 2 would restore one);
//   5. hard-link the live file to ".<name>.mlkeeper-old" (no live file: create the marker
//      ".<name>.mlkeeper-absent"), then write the candidate over the live path atomically
//      (temp file + fsync + rename, keeping the old file's mode);
//   6. run test_command (default `nginx -t`), which checks the whole configuration as nginx will
//      load it, candidate included;
//   7. failure -> rename ".mlkeeper-old" back over the live path (atomic, and the same inode: the
//      same bytes, mode, owner and SELinux label) or remove the new file, and return kTestFailed
//      with nginx's own error text; success -> drop the backup and run reload_command.
// Testing the candidate in place is what makes a plain `nginx -t` (or `docker exec web nginx -t`)
// test it: testing it under another name would need a second main config that includes it in
// place of the live file, which means rewriting the user's nginx.conf. The price is a window of
// one `nginx -t` run in which the live path holds an untested file; a reload by someone else in
// that window is harmless (nginx keeps its running config when a reload fails to parse), only a
// cold start of nginx in that window would see it. All helper files start with '.', which
// nginx's include globs (`*.conf`, `*`) do not match.
//
// A reload that fails leaves the new, checked file in place (kReloadFailed): nginx is probably
// not running, and it will load the file when it starts.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mlkeeper/homelab/nginx_config.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/process.hpp"

namespace mlk::homelab {

enum class ApplyOutcome {
    kUnchanged,     // the live file already holds these bytes; nothing was run
    kWouldChange,   // dry run: `diff` says what would change; nothing was touched
    kApplied,       // written, checked and (unless Reload::kNo) reloaded
    kTestFailed,    // the check failed: the old file is back, byte for byte; `error` says why
    kReloadFailed,  // written and checked, but the reload failed; `error` says why
};

std::string_view to_string(ApplyOutcome o);  // "unchanged", "would-change", "applied", ...

struct ApplyResult {
    ApplyOutcome outcome = ApplyOutcome::kUnchanged;
    std::filesystem::path path;  // the live file
    std::string diff;            // unified diff, live -> candidate ("" when unchanged)
    bool reloaded = false;
    bool recovered = false;  // step 2 put back a file an interrupted apply had left
    std::string error;       // kTestFailed / kReloadFailed: the command's output, trimmed

    bool ok() const {
        return outcome == ApplyOutcome::kUnchanged || outcome == ApplyOutcome::kWouldChange ||
               outcome == ApplyOutcome::kApplied;
    }
};

using CommandRunner =
    std::function<util::RunResult(const std::vector<std::string>&, const util::RunOptions&)>;

struct ApplyOptions {
    enum class Mode { kApply, kDryRun };
    enum class Reload { kYes, kNo };
    Mode mode = Mode::kApply;
    Reload reload = Reload::kYes;
    CommandRunner runner = util::run_process;  // tests inject failures here
    const util::FsOps* fs_ops = nullptr;       // nullptr = the real calls
    util::Durability durability = util::Durability::kFsync;
    std::chrono::milliseconds lock_timeout{30000};
};

// Applies `candidate` to s.output with s.test_command / s.reload_command (each bounded by
// s.command_timeout), as described at the top. Command failures are values (kTestFailed,
// kReloadFailed); throws mlk::Error naming the path when the file cannot be read, written or
// locked (the old file is then in place), or when another apply holds the lock past
// lock_timeout.
ApplyResult apply_nginx_config(const NginxSettings& s, std::string_view candidate,
                               const ApplyOptions& opts = {});

// render_nginx_config() + apply_nginx_config(): what `mlkeeper nginx render` and the agent call.
ApplyResult render_and_apply(const NginxSettings& s, const std::vector<ModelSpec>& models,
                             const RenderOptions& render = {}, const ApplyOptions& opts = {});

// A unified diff (3 lines of context) from `before` to `after`, with ---/+++ headers naming
// the labels; "" when they are equal. A missing final newline is shown as diff(1) does.
std::string unified_diff(std::string_view before, std::string_view after,
                         std::string_view before_label, std::string_view after_label);

}  // namespace mlk::homelab
