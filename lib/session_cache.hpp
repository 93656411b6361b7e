// The TLS sessions clsgwd keeps so that later channels can resume them (no signature, one round
// trip less). A session holds its master secret, so the cache is built like a key store:
//
// - Its key is a scope that the master derives from its configuration alone (see master.cpp:
//   client_scope and server_scope); nothing a worker sends widens it.
// - Bounded: at most `capacity` entries of at most SLOT_SIZE bytes each, in one mapping made at
//   reset(); when full, the oldest entry makes room. Each entry belongs to a group (its channel),
//   and a group holds at most `group_max` entries, its own oldest making room: one channel's apps
//   cannot push every other channel's sessions out.
// - Entries die at `lifetime_ms` after their full handshake (max_session_lifetime), checked on
//   every lookup and by sweep(), which the master calls when next_expiry() is due.
// - Every byte of a dropped entry is overwritten; the mapping is left out of core dumps
//   (MADV_DONTDUMP) and reads as zeros in a forked child (MADV_WIPEONFORK).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "job.hpp"

namespace clsgw {

class session_cache {
public:
    static constexpr size_t SLOT_SIZE = SESSION_BLOB_MAX;

    session_cache() = default;
    ~session_cache();
    session_cache(const session_cache &) = delete;
    session_cache &operator=(const session_cache &) = delete;

    // Drops every entry and makes room for `capacity` (0: keeps nothing). False when the mapping
    // cannot be made (the cache then keeps nothing).
    bool reset(size_t capacity, uint64_t lifetime_ms, size_t group_max);
    // Keeps a copy of blob under key, replacing an entry of the same key. False when it does not
    // fit a slot or the cache keeps nothing.
    bool put(const std::string &key, const std::string &group, const uint8_t *blob, size_t len, uint64_t created_ms,
             uint64_t now_ms);
    struct view {
        const uint8_t *data;
        size_t len;
        uint64_t created_ms;
    };
    // The live entry for key; an expired one is dropped and not returned. The view is valid until
    // the next call that changes the cache.
    std::optional<view> get(const std::string &key, uint64_t now_ms);
    void erase(const std::string &key);
    // Drops what has expired; returns how many.
    size_t sweep(uint64_t now_ms);
    // When the oldest entry expires; UINT64_MAX when empty.
    uint64_t next_expiry() const;

    size_t size() const { return entries_.size(); }
    size_t capacity() const { return capacity_; }
    size_t bytes_used() const;
    uint64_t evicted() const { return evicted_; } // made room for a newer one, since reset
    // The mapping (for tests: its flags in /proc/self/smaps, and that dropped slots are zero).
    const uint8_t *arena() const { return arena_; }
    size_t arena_size() const { return capacity_ * SLOT_SIZE; }

private:
    struct entry {
        size_t slot;
        size_t len;
        uint64_t created_ms;
        std::string group;
    };
    void drop(std::map<std::string, entry>::iterator it);
    void drop_oldest(const std::string *group);
    void unmap();

    uint8_t *arena_ = nullptr;
    size_t capacity_ = 0;
    uint64_t lifetime_ms_ = 0;
    size_t group_max_ = 0;
    std::map<std::string, size_t> group_size_;
    uint64_t evicted_ = 0;
    std::map<std::string, entry> entries_;
    std::vector<size_t> free_;
};

} // namespace clsgw
