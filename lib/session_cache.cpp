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

bool session_cache::reset(size_t capacity, uint64_t lifetime_ms, size_t group_max)
{
    unmap();
    lifetime_ms_ = lifetime_ms;
    group_max_ = group_max;
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
    if (--group_size_[it->second.group] == 0)
        group_size_.erase(it->second.group);
    entries_.erase(it);
}

// The oldest entry (of one group, or of all), which makes room for a newer one.
void session_cache::drop_oldest(const std::string *group)
{
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
        if ((!group || it->second.group == *group) &&
            (oldest == entries_.end() || it->second.created_ms < oldest->second.created_ms))
            oldest = it;
    if (oldest == entries_.end())
        return;
    drop(oldest);
    evicted_++;
}

bool session_cache::put(const std::string &key, const std::string &group, const uint8_t *blob, size_t len,
                        uint64_t created_ms, uint64_t now_ms)
{
    if (!arena_ || len == 0 || len > SLOT_SIZE || now_ms - created_ms >= lifetime_ms_)
        return false;
    erase(key);
    auto in_group = group_size_.find(group);
    if (in_group != group_size_.end() && in_group->second >= std::max<size_t>(group_max_, 1))
        drop_oldest(&group);
    if (free_.empty()) {
        sweep(now_ms);
        if (free_.empty())
            drop_oldest(nullptr);
    }
    size_t slot = free_.back();
    free_.pop_back();
    memcpy(arena_ + slot * SLOT_SIZE, blob, len);
    entries_.emplace(key, entry{slot, len, created_ms, group});
    group_size_[group]++;
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
