// `mlkeeper keygen`: a new age X25519 identity for encrypted backups, in the file format of
// `age-keygen` (so `age -d -i FILE` reads it), and `-y FILE` to print an identity's recipient.
#include <sys/stat.h>

#include <iostream>

#include <fmt/format.h>

#include "mlkeeper/cli/command.hpp"
#include "mlkeeper/core/error.hpp"
#include "mlkeeper/crypto/age_keys.hpp"
#include "mlkeeper/util/atomic_file.hpp"
#include "mlkeeper/util/time.hpp"

namespace mlk::cli {
namespace {

namespace fs = std::filesystem;

int print_recipients(const std::string& file, bool json) {
    std::vector<crypto::X25519Identity> ids;
    try {
        ids = crypto::parse_identity_file(util::read_file(file));
    } catch (const std::system_error& e) {
        throw Error(e.what());
    } catch (const std::exception& e) {
        throw Error(fmt::format("{}: {}", file, e.what()));
    }
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& id : ids) {
        arr.push_back(id.recipient().to_string());
        if (!json) {
            std::cout << id.recipient().to_string() << "\n";
        }
    }
    if (json) {
        std::cout << nlohmann::json{{"identity_file", file}, {"recipients", arr}}.dump(2) << "\n";
    }
    return 0;
}

int generate(const std::string& out, bool force, bool json) {
    auto id = crypto::X25519Identity::generate();
    const std::string recipient = id.recipient().to_string();
    const std::string text =
        crypto::identity_file_text(id, util::iso8601_utc(std::chrono::system_clock::now()));
    if (out.empty() || out == "-") {
        std::cout << text;
        std::cerr << "Public key: " << recipient << "\n";
        return 0;
    }
    std::error_code ec;
    if (!force && fs::exists(out, ec)) {
        throw Error(
            fmt::format("{} already exists; not overwriting an identity (a lost key loses "
                        "every backup encrypted to it). Use --force to replace it",
                        out));
    }
    try {
        util::write_file_atomic(out, text, 0600);
    } catch (const std::system_error& e) {
        throw Error(e.what());
    }
    if (json) {
        std::cout << nlohmann::json{{"identity_file", out}, {"recipient", recipient}}.dump(2)
                  << "\n";
    } else {
        std::cout << "Public key: " << recipient << "\n";
        std::cerr << fmt::format(
            "Wrote the identity to {} (mode 0600). Encrypt to its public key (age -r {});\n"
            "keep a copy of the identity file OFF this machine: without it nothing encrypted\n"
            "to it can be decrypted.\n",
            out, recipient);
    }
    return 0;
}

}  // namespace

Command keygen_command() {
    return Command{
        "keygen", "Create an age identity for encrypted backups (or print its public key)", "",
        Record::kNo, [](CLI::App& app, FlagBindings&) {
            struct Opts {
                std::string out, show;
                bool force = false, json = false;
            };
            auto o = std::make_shared<Opts>();
            auto* out = app.add_option("-o,--output", o->out,
                                       "Write the identity here (mode 0600) instead of stdout")
                            ->type_name("FILE");
            app.add_option("-y", o->show, "Print the public key(s) of an existing identity file")
                ->type_name("FILE")
                ->excludes(out);
            app.add_flag("--force", o->force, "Replace an existing identity file");
            app.add_flag("--json", o->json, "Print the result as JSON");
            app.footer(R"(
The identity file has the format of age-keygen, so the standard `age` tool can
decrypt backups with it in a disaster:
  age -d -i key.txt models_backup_20261122_020000.tar.zst.age | tar --zstd -x

Examples:
  mlkeeper keygen -o /root/mlkeeper-backup-key.txt
  mlkeeper keygen -y /root/mlkeeper-backup-key.txt
  mlkeeper keygen > key.txt)");
            Handler h;
            h.run = [o](Context&) {
                if (!o->show.empty()) {
                    return print_recipients(o->show, o->json);
                }
                return generate(o->out, o->force, o->json);
            };
            return h;
        }};
}

}  // namespace mlk::cli
