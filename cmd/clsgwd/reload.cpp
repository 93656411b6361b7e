// SIGHUP and `clsgwctl reload`: the new configuration is loaded and checked, its listeners and
// (when it changes) its signer made ready, then committed at once; on any error nothing changes.
#include "master.hpp"

#include <signal.h>

#include "../../lib/activation.hpp"
#include "../../lib/log.hpp"
#include "../../lib/util.hpp"
#include "environment.hpp"

namespace clsgw {

void master::reload()
{
    if (reload_) { // a newer request: the file may have changed again since
        log_info("reload started over", log_fields().add("config", cfg_.file));
        if (reload_->signer.pid > 0) {
            kill(reload_->signer.pid, SIGKILL);
            retired_signers_.push_back(reload_->signer.pid);
        }
        reload_.reset();
    }
    sd_notify_state("RELOADING=1");
    log_info("reloading", log_fields().add("config", cfg_.file));
    loaded_config loaded = load_and_check(cfg_.file);
    const checked &env = loaded.env;
    if (!loaded.errors.empty()) {
        std::string all;
        for (const auto &e : loaded.errors)
            all += (all.empty() ? "" : "; ") + e.to_string();
        return refuse_reload(all);
    }
    for (const auto &w : env.warnings)
        log_warn(w);
    pending_reload r;
    r.next = std::move(*loaded.value);
    std::string error;
    if (!build_listeners(r.next, r.listeners, error))
        return refuse_reload(error);
    r.paths = env.paths;
    r.certificate_pem = env.certificate_pem;
    r.trust_pems = env.trust_pems;
    r.uid = env.uid;
    r.gid = env.gid;
    // A signer service keeps its connection (its key changes with a restart of that service);
    // a child signer is replaced by one that has loaded the new key.
    bool keep_signer = !r.next.signer_socket.empty() && r.next.signer_socket == cfg_.signer_socket && signer_.ready;
    if (keep_signer)
        return commit_reload(r);
    // The signer service serves one master connection at a time: a connection to it that is not
    // ready (it is being replaced) makes way for the new one.
    if (signer_.external && r.next.signer_socket == cfg_.signer_socket)
        signer_.control.reset();
    r.signer = spawn_signer(r.next, r.paths.signer);
    if (r.signer.down())
        return refuse_reload("signer: the new signer could not be started");
    r.deadline_ms = now_ms() + cfg_.signer_timeout_ms;
    reload_ = std::move(r); // on_reload_signer_message commits it
}

// Running channels keep the settings, trust and signer session they started with.
void master::commit_reload(pending_reload &r)
{
    if (r.signer.ready) {
        if (signer_.control && !signer_.external)
            retired_signers_.push_back(signer_.pid);
        r.signer.restarts = signer_.restarts;
        signer_ = std::move(r.signer);
    }
    size_t before = listeners_.size();
    listeners_ = std::move(r.listeners);
    cfg_ = std::move(r.next);
    paths_ = r.paths;
    certificate_pem_ = r.certificate_pem;
    trust_pems_ = r.trust_pems;
    worker_uid_ = r.uid;
    worker_gid_ = r.gid;
    smgw_blocked_until_ms_ = 0; // the SMGW (or its address) may have changed
    smgw_backoff_.reset();
    smgw_failed_channels_ = 0;
    reset_session_cache(); // sessions were authenticated against the old trust
    channel_levels_.clear();
    log_set_threshold(cfg_.level);
    std::string why;
    if (!log_set_target(cfg_.target, cfg_.log_file, &why))
        log_error("cannot open the new log file; logging on as before", log_fields().add("error", why));
    watch_certificates();
    retire_spares();
    log_info("reloaded", log_fields().add("channels", cfg_.channels.size()).add("listeners", listeners_.size())
                             .add("listeners_before", before).add("key", signer_.key_id));
    sd_notify_state("READY=1");
    answer_reload_waiters("");
}

// Nothing of the running configuration has changed; a new signer that was started is ended.
void master::refuse_reload(const std::string &why)
{
    if (reload_ && reload_->signer.pid > 0) {
        kill(reload_->signer.pid, SIGKILL);
        retired_signers_.push_back(reload_->signer.pid);
    }
    reload_.reset();
    log_error("reload refused; the running configuration stays", log_fields().add("reason", why));
    sd_notify_state("READY=1");
    answer_reload_waiters(why);
}

} // namespace clsgw
