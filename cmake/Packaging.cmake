# Install rules and the Debian package (CPack). Included last from the top-level CMakeLists.txt.
#
#   cmake --install BUILD --prefix PREFIX    PREFIX/bin/flashcore, PREFIX/share/flashcore/configs/*.json,
#                                            PREFIX/share/doc/flashcore/{README.md,COMPATIBILITY.md}
#   cd BUILD && cpack -G DEB                 flashcore_<version>_<arch>.deb (installs under /usr)
#
# The model shapes are also built into the binary (apps/model_shapes.h): the installed copies are for people
# to read or edit and pass back as `--synthetic PATH`; the binary never looks for them.
#
# What the package needs at run time (docs/COMPATIBILITY.md has the details):
# - Debian packages, found by dpkg-shlibdeps from what the binary links (libsentencepiece0, libspdlog1.10,
#   libfmt9, libpcre2-8-0, libstdc++6, libgcc-s1, libc6): the Depends line.
# - With the CUDA backend: the NVIDIA driver, and cuBLAS/cuBLASLt (libcublas.so.N, libcublasLt.so.N of the
#   CUDA major the build used). They are not Debian packages (NVIDIA's repository, a toolkit install, or
#   pip wheels), so they cannot be Depends that every machine can satisfy: they are Recommends naming
#   NVIDIA's package (libcublas-13-0 for CUDA 13.0), which apt installs when NVIDIA's repository is
#   configured and skips otherwise. cudart is linked statically when kernels/ links CUDA::cudart_static,
#   else it is recommended too (cuda-cudart-13-0).
include(GNUInstallDirs)

install(TARGETS flashcore RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/flashcore/configs
        FILES_MATCHING PATTERN "*.json")
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/COMPATIBILITY.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The kernel microbenchmarks (fc_bench_*) and fc_soak are development tools: their output is read against
# docs/KERNELS.md and the source, scripts/gpu.sh runs them from the build tree, and each carries its own
# copy of the kernels for every GPU target (megabytes each). Left out unless asked for, then in libexec.
option(FC_INSTALL_DEV_TOOLS "Also install the kernel benchmarks and fc_soak to libexec/flashcore" OFF)
if(FC_INSTALL_DEV_TOOLS AND FC_HAVE_CUDA)
  get_property(fc_bench_targets DIRECTORY ${PROJECT_SOURCE_DIR}/kernels/bench PROPERTY BUILDSYSTEM_TARGETS)
  install(TARGETS ${fc_bench_targets} fc_soak RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/flashcore)
endif()

if(FC_HAVE_CUDA)
  # Where the installed binary looks for libcublas.so.N (RUNPATH; LD_LIBRARY_PATH still comes first and
  # ld.so.conf after): the directory this build linked against (right for `cmake --install` on the build
  # machine), the versioned and the unversioned toolkit directories of NVIDIA's packages and runfile
  # (right for the .deb on another machine). A directory that does not exist costs nothing.
  set(fc_cuda_dir "/usr/local/cuda-${CUDAToolkit_VERSION_MAJOR}.${CUDAToolkit_VERSION_MINOR}")
  set(fc_default_rpath "${CUDAToolkit_LIBRARY_DIR}" "${fc_cuda_dir}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux/lib"
      "/usr/local/cuda/lib64")
  list(REMOVE_DUPLICATES fc_default_rpath)
  set(FC_INSTALL_RPATH "${fc_default_rpath}" CACHE STRING "RUNPATH of the installed flashcore (the cuBLAS directories)")
  set_target_properties(flashcore PROPERTIES INSTALL_RPATH "${FC_INSTALL_RPATH}")
endif()

set(CPACK_PACKAGE_NAME flashcore)
set(CPACK_PACKAGE_VENDOR "FlashCore")
set(CPACK_PACKAGE_CONTACT "FlashCore developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "LLaMA-family inference engine for NVIDIA GPUs (C++17/CUDA)")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "flashcore generate, chat, bench and validate for Hugging Face LLaMA checkpoints.\n"
    "Runs on NVIDIA GPUs through its CUDA kernels and cuBLAS, or slowly on the CPU.")
set(CPACK_PACKAGE_INSTALL_DIRECTORY flashcore)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # flashcore_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends from the libraries the binary links (dpkg-shlibdeps)
# Without dpkg-shlibdeps CPack would write a package with no Depends at all, silently (`file` it demands).
find_program(FC_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(NOT FC_DPKG_SHLIBDEPS)
  message(WARNING "dpkg-shlibdeps not found (package dpkg-dev): `cpack -G DEB` would list no dependencies")
endif()
set(CPACK_STRIP_FILES ON)                # a tool to run; debug from the build tree
if(FC_HAVE_CUDA)
  set(fc_cuda_pkg_version "${CUDAToolkit_VERSION_MAJOR}-${CUDAToolkit_VERSION_MINOR}")
  set(fc_recommends "libcublas-${fc_cuda_pkg_version}")
  get_target_property(fc_kernel_libs fc_kernels_cuda LINK_LIBRARIES)
  if(NOT "CUDA::cudart_static" IN_LIST fc_kernel_libs)
    list(APPEND fc_recommends "cuda-cudart-${fc_cuda_pkg_version}")
  endif()
  string(REPLACE ";" ", " CPACK_DEBIAN_PACKAGE_RECOMMENDS "${fc_recommends}")
  string(REPLACE ";" ":" fc_rpath_text "${FC_INSTALL_RPATH}")
  set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
      "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}\n"
      "Built with CUDA ${CUDAToolkit_VERSION}: needs an NVIDIA driver for CUDA ${CUDAToolkit_VERSION_MAJOR}.x "
      "and cuBLAS/cuBLASLt ${CUDAToolkit_VERSION_MAJOR}.x (libcublas.so.${CUDAToolkit_VERSION_MAJOR}, "
      "libcublasLt.so.${CUDAToolkit_VERSION_MAJOR}),\n"
      "found through LD_LIBRARY_PATH, the RUNPATH (${fc_rpath_text}) or ld.so.conf.")
else()
  set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
      "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}\nThis build has no CUDA backend: CPU only.")
endif()
string(REPLACE ";" "" CPACK_DEBIAN_PACKAGE_DESCRIPTION "${CPACK_DEBIAN_PACKAGE_DESCRIPTION}")
include(CPack)
