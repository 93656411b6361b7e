#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <tuple>

#include "../../lib/ipc.hpp"
#include "../../lib/job.hpp"
#include "../../lib/signer_proto.hpp"

using namespace clsgw;

// A record as the receiver reads it after encoding: nullopt when it does not decode.
template <class Record, class Encode, class Decode>
auto round_trip(const Record &record, Encode encode, Decode decode)
{
    std::string err;
    return decode(encode(record), err);
}

TEST_CASE("frames round-trip through a SEQPACKET pair, with and without a passed fd")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    bytes payload = {1, 2, 3};
    REQUIRE(ipc_send(a.get(), msg_type::established, payload));
    auto r = ipc_recv(b.get(), false);
    REQUIRE(r.status == ipc_status::ok);
    CHECK(r.message.type == msg_type::established);
    CHECK(r.message.payload == payload);

    int pipefd[2];
    REQUIRE(pipe2(pipefd, O_CLOEXEC) == 0);
    unique_fd rd(pipefd[0]), wr(pipefd[1]);
    REQUIRE(ipc_send(a.get(), msg_type::upstream_ready, {}, wr.get()));
    auto f = ipc_recv(b.get(), true);
    REQUIRE(f.status == ipc_status::ok);
    REQUIRE(f.message.fd.valid());
    CHECK(write(f.message.fd.get(), "x", 1) == 1);
    char c = 0;
    CHECK(read(rd.get(), &c, 1) == 1);
    CHECK(c == 'x');
}

TEST_CASE("a receiver that expects no fd rejects a frame carrying one, and does not leak it")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    REQUIRE(ipc_send(a.get(), msg_type::log, {6, 'x'}, STDIN_FILENO));
    auto r = ipc_recv(b.get(), false);
    CHECK(r.status == ipc_status::error);
    CHECK(r.error.find("unexpected file descriptors") != std::string::npos);
}

TEST_CASE("frames with a bad header are rejected")
{
    std::string err;
    uint8_t short_frame[4] = {};
    CHECK_FALSE(ipc_decode(short_frame, sizeof short_frame, err));
    CHECK(err == "frame shorter than its header");

    auto good = ipc_encode(msg_type::log, {1, 2});
    REQUIRE(good);
    bytes unknown = *good;
    unknown[0] = 0x77;
    CHECK_FALSE(ipc_decode(unknown.data(), unknown.size(), err));
    CHECK(err.find("unknown message type") == 0);

    bytes lying = *good;
    lying[4] = 9; // says 9 bytes, carries 2
    CHECK_FALSE(ipc_decode(lying.data(), lying.size(), err));
    CHECK(err.find("does not match") != std::string::npos);

    bytes huge = *good;
    uint32_t big = ipc_max_payload + 1;
    memcpy(huge.data() + 4, &big, 4);
    CHECK_FALSE(ipc_decode(huge.data(), huge.size(), err));
    CHECK(err.find("over the cap") != std::string::npos);

    CHECK_FALSE(ipc_encode(msg_type::log, bytes(ipc_max_payload + 1)).has_value());
}

TEST_CASE("the peer closing is reported as closed, not as an error")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    a.reset();
    CHECK(ipc_recv(b.get(), false).status == ipc_status::closed);
    CHECK(ipc_recv(b.get(), false).status == ipc_status::closed);
}

TEST_CASE("TLV records reject truncation, overlong fields and repeated tags")
{
    tlv_writer w;
    w.add(1, "abc").add_u64(2, 7);
    tlv_reader r;
    std::string err;
    REQUIRE(r.parse(w.data(), err));
    CHECK(*r.str(1, 10) == "abc");
    CHECK_FALSE(r.str(1, 2).has_value());
    CHECK(*r.u64(2) == 7);
    CHECK_FALSE(r.u64(1).has_value());

    bytes cut(w.data().begin(), w.data().end() - 1);
    CHECK_FALSE(r.parse(cut, err));
    tlv_writer twice;
    twice.add(1, "a").add(1, "b");
    CHECK_FALSE(r.parse(twice.data(), err));
    CHECK(err.find("repeated") != std::string::npos);
}

TEST_CASE("a job survives encoding and a damaged job is refused")
{
    worker_job j;
    j.channel_id = 42;
    j.channel_name = "app";
    j.peer = "127.0.0.1:5";
    j.ingress = ingress_kind::socks5;
    j.proxy = proxy_kind::sni;
    j.allow = {*parse_allow_rule("*.example:443"), *parse_allow_rule("emt.example:*")};
    j.certificate_pem = "CERT";
    j.trust_pem = "TRUST";
    j.uid = 65534;
    j.gid = 65534;
    auto back = round_trip(j, encode_job, decode_job);
    REQUIRE(back);
    CHECK(back->channel_id == 42);
    CHECK(back->proxy == proxy_kind::sni);
    CHECK(back->allow.size() == 2);
    CHECK(back->allow[1].port == 0);
    CHECK(back->uid == 65534);
    CHECK_FALSE(back->target.has_value());
    bytes damaged = encode_job(j);
    damaged.resize(damaged.size() / 2);
    std::string err;
    CHECK_FALSE(decode_job(damaged, err).has_value());
}

TEST_CASE("a result with an out-of-range outcome is refused")
{
    worker_result r = [] {
        worker_result sample;
        sample.result = outcome::ok;
        sample.reason = reason_of(reason_code::plain_closed);
        sample.smgw_wait_us = 9149;
        sample.signer_us = 1203;
        return sample;
    }();
    auto back = round_trip(r, encode_result, decode_result);
    REQUIRE(back);
    CHECK(std::tie(back->reason, back->smgw_wait_us, back->signer_us) == std::tie(r.reason, r.smgw_wait_us, r.signer_us));
    tlv_writer w;
    w.add_u64(1, 9);
    std::string err;
    CHECK_FALSE(decode_result(w.data(), err).has_value());
}

TEST_CASE("signer requests are validated: key id, digest and its length")
{
    uint8_t key[signer::KEY_ID_LEN];
    memset(key, 0xab, sizeof key);
    signer::request req;
    memcpy(req.key_id, key, sizeof key);
    req.digest_alg = static_cast<uint8_t>(signer::digest::sha256);
    req.hash_len = 32;
    CHECK(signer::validate_request(req, key) == signer::status::ok);
    req.hash_len = 48;
    CHECK(signer::validate_request(req, key) == signer::status::wrong_digest_length);
    req.digest_alg = static_cast<uint8_t>(signer::digest::sha384);
    CHECK(signer::validate_request(req, key) == signer::status::ok);
    req.digest_alg = 9;
    CHECK(signer::validate_request(req, key) == signer::status::unsupported_digest);
    req.digest_alg = 0;
    CHECK(signer::validate_request(req, key) == signer::status::unsupported_digest);
    req.key_id[0] ^= 1;
    CHECK(signer::validate_request(req, key) == signer::status::unknown_key);
}

TEST_CASE("signer requests have one exact size; answers are bounded")
{
    signer::request req;
    req.seq = 7;
    bytes enc = signer::encode_request(req);
    CHECK(enc.size() == signer::REQUEST_SIZE);
    CHECK(signer::decode_request(enc)->seq == 7);
    enc.push_back(0);
    CHECK_FALSE(signer::decode_request(enc).has_value());

    signer::answer a;
    a.seq = 3;
    a.st = signer::status::ok;
    a.signature = bytes(71, 1);
    auto back = signer::decode_answer(signer::encode_answer(a));
    REQUIRE(back);
    CHECK(back->signature.size() == 71);
    a.signature = bytes(signer::MAX_SIG_LEN + 1, 1);
    CHECK_FALSE(signer::decode_answer(signer::encode_answer(a)).has_value());
    signer::answer refusal;
    refusal.st = signer::status::quota_exceeded;
    refusal.signature = bytes(3, 1); // an error must carry no signature
    CHECK_FALSE(signer::decode_answer(signer::encode_answer(refusal)).has_value());
}

TEST_CASE("a peer that exits without reading its message counts as closed, not as an error")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    REQUIRE(ipc_send(a.get(), msg_type::job, {1, 2, 3}));
    b.reset(); // gone with the job unread
    CHECK(ipc_recv(a.get(), false).status == ipc_status::closed);
}

#include "../../lib/ipc_rules.hpp"

TEST_CASE("every message type has exactly one row in the protocol table")
{
    int rows = 0;
    for (const ipc_rule *r = ipc_rules_begin(); r != ipc_rules_end(); ++r) {
        rows++;
        CHECK(ipc_rule_for(r->type) == r);
        CHECK(r->from != 0);
        CHECK(r->to != 0);
        CHECK(r->max_payload <= ipc_max_payload);
    }
    CHECK(rows == 20);
}

TEST_CASE("frames are checked against their row at receive: receiver, size, fd and count")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    ipc_budget budget;
    // A worker's upstream_request: once per channel.
    REQUIRE(ipc_send(a.get(), msg_type::upstream_request, bytes{'x'}));
    CHECK(ipc_recv_checked(b.get(), role_master, budget).status == ipc_status::ok);
    REQUIRE(ipc_send(a.get(), msg_type::upstream_request, bytes{'x'}));
    auto twice = ipc_recv_checked(b.get(), role_master, budget);
    CHECK(twice.status == ipc_status::error);
    CHECK(twice.error.find("more often") != std::string::npos);
    CHECK(twice.violation == ipc_violation::over_count);
    CHECK(twice.message.payload == bytes{'x'}); // kept: the signer audits a request over its quota
    // A master-to-worker message arriving at the master.
    REQUIRE(ipc_send(a.get(), msg_type::job, bytes{}));
    CHECK(ipc_recv_checked(b.get(), role_master, budget).violation == ipc_violation::not_for_receiver);
    // Over its size.
    REQUIRE(ipc_send(a.get(), msg_type::progress, bytes(65, 0)));
    auto big = ipc_recv_checked(b.get(), role_master, budget);
    CHECK(big.status == ipc_status::error);
    CHECK(big.error.find("over its size") != std::string::npos);
    CHECK(big.violation == ipc_violation::over_size);
    // An fd where none belongs, and none where one must be.
    REQUIRE(ipc_send(a.get(), msg_type::progress, bytes(16, 0), a.get()));
    auto fd = ipc_recv_checked(b.get(), role_master, budget);
    CHECK(fd.status == ipc_status::error);
    CHECK(fd.violation == ipc_violation::fd_rule);
    CHECK(!fd.message.fd);
    REQUIRE(ipc_send(b.get(), msg_type::upstream_ready, bytes{}));
    ipc_budget worker;
    auto no_fd = ipc_recv_checked(a.get(), role_worker, worker);
    CHECK(no_fd.status == ipc_status::error);
    CHECK(no_fd.violation == ipc_violation::fd_rule);
    // Progress is not counted (the master holds it to a rate); log records are, generously.
    for (int i = 0; i < 100; i++) {
        REQUIRE(ipc_send(a.get(), msg_type::progress, bytes(16, 0)));
        REQUIRE(ipc_recv_checked(b.get(), role_master, budget).status == ipc_status::ok);
    }
    for (int i = 0; i < 1000; i++) {
        REQUIRE(ipc_send(a.get(), msg_type::log, bytes{6}));
        REQUIRE(ipc_recv_checked(b.get(), role_master, budget).status == ipc_status::ok);
    }
    REQUIRE(ipc_send(a.get(), msg_type::log, bytes{6}));
    CHECK(ipc_recv_checked(b.get(), role_master, budget).status == ipc_status::error);
}

TEST_CASE("the signer's link leaves its log lines uncounted and nothing else")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    ipc_budget link{msg_type::log};
    for (int i = 0; i < 1500; i++) {
        REQUIRE(ipc_send(a.get(), msg_type::log, bytes{6}));
        REQUIRE(ipc_recv_checked(b.get(), role_master, link).status == ipc_status::ok);
    }
    REQUIRE(ipc_send(a.get(), msg_type::signer_ready, bytes{}));
    CHECK(ipc_recv_checked(b.get(), role_master, link).status == ipc_status::ok);
    REQUIRE(ipc_send(a.get(), msg_type::signer_ready, bytes{}));
    CHECK(ipc_recv_checked(b.get(), role_master, link).violation == ipc_violation::over_count);
}

TEST_CASE("a signer session's counts: its signatures, then one refusal; the answers to them all")
{
    unique_fd worker, signer;
    REQUIRE(ipc_socketpair(worker, signer));
    ipc_budget at_signer, at_worker;
    bytes request(signer::REQUEST_SIZE, 0);
    for (unsigned i = 0; i < signer::SIGNATURES_PER_SESSION; i++) {
        REQUIRE(ipc_send(worker.get(), msg_type::sign_request, request));
        CHECK(ipc_recv_checked(signer.get(), role_signer, at_signer).status == ipc_status::ok);
    }
    REQUIRE(ipc_send(worker.get(), msg_type::sign_request, request));
    auto over = ipc_recv_checked(signer.get(), role_signer, at_signer);
    CHECK(over.violation == ipc_violation::over_count);
    CHECK(over.message.type == msg_type::sign_request);
    CHECK(over.message.payload.size() == signer::REQUEST_SIZE);
    for (unsigned i = 0; i < signer::SIGNATURES_PER_SESSION + 1; i++) {
        REQUIRE(ipc_send(signer.get(), msg_type::sign_answer, bytes{1}));
        CHECK(ipc_recv_checked(worker.get(), role_worker, at_worker).status == ipc_status::ok);
    }
    REQUIRE(ipc_send(signer.get(), msg_type::sign_answer, bytes{1}));
    CHECK(ipc_recv_checked(worker.get(), role_worker, at_worker).violation == ipc_violation::over_count);
}

TEST_CASE("a send that would wait fails instead: the socket buffer is the peer's bounded queue")
{
    unique_fd a, b;
    REQUIRE(ipc_socketpair(a, b));
    bytes chunk(60000, 7);
    int sent = 0;
    while (ipc_send_nowait(a.get(), msg_type::job, chunk) && sent < 10000)
        sent++;
    CHECK(errno == EAGAIN);
    CHECK(sent > 0);
    CHECK(sent < 10000);
}

TEST_CASE("session_open, signer_ready and the signer's log lines decode what was encoded and refuse the rest")
{
    auto tag = signer::decode_session_open(signer::encode_session_open({42, "meter", "127.0.0.1:5"}));
    REQUIRE(tag);
    CHECK(std::tie(tag->channel_id, tag->channel_name, tag->peer) ==
          std::make_tuple(uint64_t{42}, std::string("meter"), std::string("127.0.0.1:5")));
    CHECK_FALSE(signer::decode_session_open(signer::encode_session_open({1, std::string(129, 'n'), "p"})));
    tlv_writer no_peer;
    no_peer.add_u64(1, 1).add(2, "meter");
    CHECK_FALSE(signer::decode_session_open(no_peer.data()));

    uint8_t key_id[signer::KEY_ID_LEN];
    memset(key_id, 0x5a, sizeof key_id);
    auto id = signer::decode_signer_ready(signer::encode_signer_ready(key_id));
    REQUIRE(id);
    CHECK(*id == bytes(key_id, key_id + sizeof key_id));
    CHECK_FALSE(signer::decode_signer_ready(bytes{1, 2, 3}));

    auto line = signer::decode_log(signer::encode_log(log_level::warn, "key loaded\x1b[31m"));
    REQUIRE(line);
    CHECK(line->first == log_level::warn);
    CHECK(line->second == "key loaded?[31m");
    CHECK(signer::encode_log(log_level::info, std::string(5000, 'x')).size() == 1 + signer::LOG_LINE_MAX);
    CHECK_FALSE(signer::decode_log({}));
    CHECK_FALSE(signer::decode_log(bytes{0xee, 'x'}));
    bytes too_long(2 + signer::LOG_LINE_MAX, 'x');
    too_long[0] = static_cast<uint8_t>(log_level::info);
    CHECK_FALSE(signer::decode_log(too_long));
}

TEST_CASE("signer_probe and signer_counts decode what was encoded and refuse the rest")
{
    CHECK(signer::decode_probe(signer::encode_probe(77)) == std::optional<uint64_t>(77));
    CHECK_FALSE(signer::decode_probe(bytes{}));
    CHECK_FALSE(signer::decode_probe(signer::encode_counts({1, 2, 3, 4})));
    auto c = signer::decode_counts(signer::encode_counts({9, 120, 3, 64}));
    REQUIRE(c);
    CHECK(std::tie(c->seq, c->signatures, c->refusals, c->sessions) == std::make_tuple(9u, 120u, 3u, 64u));
    CHECK_FALSE(signer::decode_counts(signer::encode_probe(9)));
    bytes extra = signer::encode_counts({9, 120, 3, 64});
    bytes tail = tlv_writer().add_u64(5, 1).take();
    extra.insert(extra.end(), tail.begin(), tail.end());
    CHECK_FALSE(signer::decode_counts(extra));
    bytes cut = signer::encode_counts({9, 120, 3, 64});
    cut.pop_back();
    CHECK_FALSE(signer::decode_counts(cut));
}

TEST_CASE("upstream_request carries one printable word: a target or a channel name")
{
    CHECK(decode_upstream_request(encode_upstream_request("emt.example:443")) == std::optional<std::string>("emt.example:443"));
    CHECK(decode_upstream_request(encode_upstream_request("meter-data")) == std::optional<std::string>("meter-data"));
    CHECK_FALSE(decode_upstream_request(bytes{}));
    CHECK_FALSE(decode_upstream_request(encode_upstream_request("emt.example:443\n")));
    CHECK_FALSE(decode_upstream_request(encode_upstream_request("two words")));
    CHECK_FALSE(decode_upstream_request(bytes{0xff, 0xfe}));
    CHECK(decode_upstream_request(bytes(UPSTREAM_CHOICE_MAX, 'a')));
    CHECK_FALSE(decode_upstream_request(bytes(UPSTREAM_CHOICE_MAX + 1, 'a')));
    CHECK(ipc_rule_for(msg_type::upstream_request)->max_payload == UPSTREAM_CHOICE_MAX);
}
