// cxx_prog: a C++ workload for the override tests and bench/programs.sh.
//
// Threads build std::map / std::unordered_map of std::string from
// deterministic pseudo-random words, pass batches of strings to each other
// through a mutex-protected queue (so blocks allocated by one thread are
// freed by another), then the main thread merges everything. Prints
// checksums that depend only on the data, never on scheduling or on
// addresses, so the output is identical under every allocator.
//
// usage: cxx_prog [THREADS [WORDS_PER_THREAD [ROUNDS]]]  (defaults 6 200000 3)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    uint32_t below(uint32_t n) { return static_cast<uint32_t>(next() % n); }
};

uint64_t fnv(const std::string &str, uint64_t h = 1469598103934665603ull) {
    for (unsigned char c : str) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

const char *const syllables[] = {"ka", "lo", "mi", "ne", "qua", "ru", "sto", "ti", "vel", "xo",
                                 "zan", "ber", "chi", "dor", "eph", "fun", "gli", "hos"};
const unsigned nsyl = sizeof syllables / sizeof syllables[0];

std::string make_word(Rng &r) {
    std::string w;
    // Mostly short words, a few long ones (past the small-string buffer and
    // into larger size classes).
    unsigned n = 1 + r.below(4);
    if (r.below(50) == 0)
        n += 20 + r.below(200);
    for (unsigned i = 0; i < n; i++)
        w += syllables[r.below(nsyl)];
    return w;
}

// A batch of strings handed from one thread to another.
struct Batch {
    std::vector<std::string> words;
    unsigned from;
};

struct Mailbox {
    std::mutex m;
    std::deque<std::unique_ptr<Batch>> q;
};

struct alignas(64) Padded {
    uint64_t v[8];
};

struct Result {
    std::map<std::string, uint64_t> counts;  // words this thread generated
    std::map<std::string, uint64_t> received;  // words other threads sent it
    uint64_t sorted_hash = 0;
    uint64_t list_hash = 0;
};

void worker(unsigned id, unsigned nthreads, unsigned words, unsigned rounds,
            std::vector<Mailbox> &boxes, Result &res) {
    Rng r(id + 1);
    for (unsigned round = 0; round < rounds; round++) {
        std::unordered_map<std::string, uint64_t> local;
        std::vector<std::string> all;
        all.reserve(words / 4);  // grows past this: vector reallocation
        auto batch = std::make_unique<Batch>();
        batch->from = id;
        for (unsigned i = 0; i < words; i++) {
            std::string w = make_word(r);
            local[w]++;
            if (i % 4 == 0)
                all.push_back(w);
            if (i % 3 == 0)
                batch->words.push_back(w);
            if (batch->words.size() == 256) {
                Mailbox &b = boxes[(id + 1 + round) % nthreads];
                {
                    std::lock_guard<std::mutex> g(b.m);
                    b.q.push_back(std::move(batch));
                }
                batch = std::make_unique<Batch>();
                batch->from = id;
            }
            // Drain our own mailbox now and then: strings built by other
            // threads die here.
            if (i % 512 == 0) {
                Mailbox &mine = boxes[id];
                std::deque<std::unique_ptr<Batch>> got;
                {
                    std::lock_guard<std::mutex> g(mine.m);
                    got.swap(mine.q);
                }
                for (auto &bp : got)
                    for (auto &s : bp->words)
                        res.received[s]++;
            }
        }
        if (!batch->words.empty()) {
            Mailbox &b = boxes[(id + 1 + round) % nthreads];
            std::lock_guard<std::mutex> g(b.m);
            b.q.push_back(std::move(batch));
        }
        std::sort(all.begin(), all.end());
        all.erase(std::unique(all.begin(), all.end()), all.end());
        uint64_t h = res.sorted_hash;
        for (auto &s : all)
            h = fnv(s, h);
        res.sorted_hash = h;
        for (auto &kv : local)
            res.counts[kv.first] += kv.second;

        // A linked list of aligned blocks and shared pointers: over-aligned
        // operator new (aligned_alloc) and small fixed-size nodes.
        std::list<std::shared_ptr<Padded>> lst;
        for (unsigned i = 0; i < 4096; i++) {
            auto p = std::make_shared<Padded>();
            auto q = std::unique_ptr<Padded>(new Padded());
            for (unsigned k = 0; k < 8; k++)
                p->v[k] = q->v[k] + i * 8 + k;
            lst.push_back(p);
        }
        uint64_t lh = 0;
        for (auto &p : lst)
            lh = lh * 31 + p->v[7];
        res.list_hash = res.list_hash * 1000003 + lh + round + id;

        // A big buffer grown by doubling (realloc-like path for large blocks).
        std::string big;
        for (unsigned i = 0; i < 20000; i++)
            big += syllables[i % nsyl];
        res.list_hash += fnv(big);
    }
}

}  // namespace

int main(int argc, char **argv) {
    unsigned nthreads = argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 6;
    unsigned words = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 200000;
    unsigned rounds = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 3;
    if (nthreads < 2)
        nthreads = 2;

    std::vector<Mailbox> boxes(nthreads);
    std::vector<Result> results(nthreads);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < nthreads; t++)
        threads.emplace_back(worker, t, nthreads, words, rounds, std::ref(boxes), std::ref(results[t]));
    for (auto &t : threads)
        t.join();

    // Whatever was still in the mailboxes after the threads stopped draining.
    for (unsigned t = 0; t < nthreads; t++)
        for (auto &bp : boxes[t].q)
            for (auto &s : bp->words)
                results[t].received[s]++;

    // Merge: generated words and received words must agree in total.
    std::map<std::string, uint64_t> merged, merged_recv;
    uint64_t sorted_hash = 0, list_hash = 0;
    for (auto &res : results) {
        for (auto &kv : res.counts)
            merged[kv.first] += kv.second;
        for (auto &kv : res.received)
            merged_recv[kv.first] += kv.second;
        sorted_hash = sorted_hash * 31 + res.sorted_hash;
        list_hash = list_hash * 31 + res.list_hash;
    }
    uint64_t total = 0, h = 0, hr = 0, total_recv = 0;
    size_t longest = 0;
    for (auto &kv : merged) {
        total += kv.second;
        h = fnv(kv.first, h) ^ kv.second;
        longest = std::max(longest, kv.first.size());
    }
    for (auto &kv : merged_recv) {
        total_recv += kv.second;
        hr = fnv(kv.first, hr) ^ kv.second;
    }
    // The most frequent words, ties broken by the word itself.
    std::vector<std::pair<uint64_t, std::string>> top;
    top.reserve(merged.size());
    for (auto &kv : merged)
        top.emplace_back(kv.second, kv.first);
    std::sort(top.begin(), top.end(), [](const auto &a, const auto &b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });

    std::printf("threads=%u words=%u rounds=%u\n", nthreads, words, rounds);
    std::printf("distinct=%zu total=%llu longest=%zu\n", merged.size(),
                static_cast<unsigned long long>(total), longest);
    std::printf("received_distinct=%zu received_total=%llu\n", merged_recv.size(),
                static_cast<unsigned long long>(total_recv));
    for (size_t i = 0; i < 5 && i < top.size(); i++)
        std::printf("top%zu %s %llu\n", i, top[i].second.c_str(),
                    static_cast<unsigned long long>(top[i].first));
    std::printf("hash=%016llx recv=%016llx sorted=%016llx list=%016llx\n",
                static_cast<unsigned long long>(h), static_cast<unsigned long long>(hr),
                static_cast<unsigned long long>(sorted_hash),
                static_cast<unsigned long long>(list_hash));
    return 0;
}
