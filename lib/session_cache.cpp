#include "session_cache.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>

namespace clsgw {

session_cache::~session_cache() { unmap(); }

void session_cache::unmap()
{
    for (auto it = entries_.begin(); it != entries_.end();)
        drop(it++);
    if (arena_)
        munmap(arena_, arena_size());
    arena_ = nullptr;
    capacity_ = 0;
    free_.clear();
}

bool session_cache::reset(size_t capacity, uint64_t lifetime_ms)
{
    unmap();
    lifetime_ms_ = lifetime_ms;
    evicted_ = 0;
    if (capacity == 0)
        return true;
    void *p = mmap(nullptr, capacity * SLOT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return false;
    arena_ = static_cast<uint8_t *>(p);
    capacity_ = capacity;
    // Secrets stay out of core dumps, and a child forked before its exec sees zeros here.
    madvise(arena_, arena_size(), MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
    madvise(arena_, arena_size(), MADV_WIPEONFORK);
#endif
    free_.reserve(capacity);
    for (size_t i = capacity; i-- > 0;)
        free_.push_back(i);
    return true;
}

void session_cache::drop(std::map<std::string, entry>::iterator it)
{
    explicit_bzero(arena_ + it->second.slot * SLOT_SIZE, it->second.len);
    free_.push_back(it->second.slot);
    entries_.erase(it);
}

bool session_cache::put(const std::string &key, const uint8_t *blob, size_t len, uint64_t created_ms, uint64_t now_ms)
{
    if (!arena_ || len == 0 || len > SLOT_SIZE || now_ms - created_ms >= lifetime_ms_)
        return false;
    erase(key);
    if (free_.empty()) {
        sweep(now_ms);
        if (free_.empty()) {
            auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const auto &a, const auto &b) {
                return a.second.created_ms < b.second.created_ms;
            });
            drop(oldest);
            evicted_++;
        }
    }
    size_t slot = free_.back();
    free_.pop_back();
    memcpy(arena_ + slot * SLOT_SIZE, blob, len);
    entries_.emplace(key, entry{slot, len, created_ms});
    return true;
}

std::optional<session_cache::view> session_cache::get(const std::string &key, uint64_t now_ms)
{
    auto it = entries_.find(key);
    if (it == entries_.end())
        return std::nullopt;
    if (now_ms - it->second.created_ms >= lifetime_ms_) {
        drop(it);
        return std::nullopt;
    }
    return view{arena_ + it->second.slot * SLOT_SIZE, it->second.len, it->second.created_ms};
}

void session_cache::erase(const std::string &key)
{
    auto it = entries_.find(key);
    if (it != entries_.end())
        drop(it);
}

size_t session_cache::sweep(uint64_t now_ms)
{
    size_t n = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        auto next = std::next(it);
        if (now_ms - it->second.created_ms >= lifetime_ms_) {
            drop(it);
            n++;
        }
        it = next;
    }
    return n;
}

uint64_t session_cache::next_expiry() const
{
    uint64_t next = UINT64_MAX;
    for (const auto &[key, e] : entries_)
        next = std::min(next, e.created_ms + lifetime_ms_);
    return next;
}

size_t session_cache::bytes_used() const
{
    size_t n = 0;
    for (const auto &[key, e] : entries_)
        n += e.len;
    return n;
}

} // namespace clsgw
