import type { Catalogue, NoticeEvent } from "./catalogue.js";

const notices: Record<NoticeEvent, { subject: string; line: string }> = {
  new_device_login: { subject: "Đăng nhập mới vào tài khoản của bạn", line: "Tài khoản của bạn vừa được đăng nhập từ một thiết bị hoặc địa điểm mới." },
  password_changed: { subject: "Mật khẩu của bạn đã được thay đổi", line: "Mật khẩu tài khoản của bạn đã được thay đổi." },
  password_reset: { subject: "Mật khẩu của bạn đã được đặt lại", line: "Mật khẩu tài khoản của bạn đã được đặt lại bằng liên kết trong thư đặt lại mật khẩu. Mọi thiết bị đã bị đăng xuất." },
  mfa_enabled: { subject: "Xác minh hai bước đã được bật", line: "Một ứng dụng xác thực đã được thêm vào tài khoản: khi đăng nhập sẽ cần mã của ứng dụng này." },
  mfa_disabled: { subject: "Xác minh hai bước đã bị tắt", line: "Xác minh hai bước của tài khoản bạn đã bị tắt." },
  mfa_enrollment_started: { subject: "Một ứng dụng xác thực đang được thêm", line: "Có người bắt đầu thêm một ứng dụng xác thực vào tài khoản của bạn." },
  recovery_codes_regenerated: { subject: "Mã khôi phục mới", line: "Bộ mã khôi phục mới đã được tạo; các mã cũ không còn dùng được." },
  email_changed: { subject: "Địa chỉ e-mail của bạn đã được thay đổi", line: "Địa chỉ e-mail của tài khoản bạn đã được thay đổi." },
  account_locked: { subject: "Tài khoản của bạn đã bị khóa tạm thời", line: "Có quá nhiều lần nhập sai mật khẩu vào tài khoản của bạn, nên việc đăng nhập tạm dừng một thời gian." },
};

const notYou = "Nếu không phải bạn, hãy đặt lại mật khẩu ngay và kiểm tra các thiết bị của tài khoản.";

export const vi: Catalogue = {
  verify_email: (v) => ({
    subject: "Xác nhận địa chỉ e-mail của bạn",
    paragraphs: [`Vui lòng xác nhận địa chỉ này là của bạn, cho tài khoản ${v.appName}.`],
    action: v.link ? { label: "Xác nhận địa chỉ", url: v.link } : undefined,
    footer: [`Liên kết có hiệu lực trong ${v.validFor ?? "24 giờ"}.`, "Nếu bạn không tạo tài khoản hay đổi địa chỉ, hãy bỏ qua thư này."],
  }),
  registration_attempt: (v) => ({
    subject: "Có người thử đăng ký bằng địa chỉ của bạn",
    paragraphs: [
      `Có người vừa thử tạo tài khoản ${v.appName} mới bằng địa chỉ e-mail này, trong khi địa chỉ đã có tài khoản.`,
      "Nếu đó là bạn, hãy đăng nhập, hoặc đặt lại mật khẩu nếu bạn quên.",
    ],
    action: v.link ? { label: "Đăng nhập", url: v.link } : undefined,
    footer: ["Nếu không phải bạn, không có gì thay đổi và bạn có thể bỏ qua thư này."],
  }),
  password_reset: (v) => ({
    subject: "Đặt lại mật khẩu",
    paragraphs: [`Có người (hy vọng là bạn) yêu cầu đặt lại mật khẩu tài khoản ${v.appName}.`],
    action: v.link ? { label: "Chọn mật khẩu mới", url: v.link } : undefined,
    footer: [`Liên kết chỉ dùng được một lần, trong ${v.validFor ?? "30 phút"}.`, "Nếu bạn không yêu cầu, hãy bỏ qua thư này: mật khẩu của bạn vẫn giữ nguyên."],
  }),
  email_login: (v) => ({
    subject: `Liên kết đăng nhập ${v.appName}`,
    paragraphs: [`Bấm nút để đăng nhập vào tài khoản ${v.appName}, hoặc nhập mã này ở nơi bạn đã yêu cầu:`],
    code: v.code,
    action: v.link ? { label: "Đăng nhập", url: v.link } : undefined,
    footer: [
      `Liên kết và mã chỉ dùng được một lần, trong ${v.validFor ?? "15 phút"}.${v.ip ? ` Yêu cầu từ ${v.ip}${v.at ? ` lúc ${v.at}` : ""}.` : ""}`,
      "Đừng bao giờ đưa mã này cho ai, và đừng nhập nó trên trang web khác. Nếu bạn không yêu cầu, hãy bỏ qua thư này.",
    ],
  }),
  email_change_notice: (v) => ({
    subject: "Địa chỉ e-mail của bạn đang được thay đổi",
    paragraphs: [
      `Có người yêu cầu đổi địa chỉ e-mail của tài khoản ${v.appName} sang ${v.newEmail ?? "một địa chỉ khác"}.`,
      "Nếu không phải bạn, hãy hoàn tác: địa chỉ này sẽ được khôi phục và mọi thiết bị bị đăng xuất.",
    ],
    action: v.link ? { label: "Hoàn tác thay đổi", url: v.link } : undefined,
    footer: [`Liên kết có hiệu lực trong ${v.validFor ?? "7 ngày"}.`],
  }),
  security_notice: (v) => {
    const n = notices[v.event as NoticeEvent] ?? { subject: "Thông báo bảo mật", line: "Cài đặt bảo mật của tài khoản bạn vừa thay đổi." };
    const where = v.ip ? ` (từ ${v.ip}${v.at ? `, ${v.at}` : ""})` : v.at ? ` (${v.at})` : "";
    return { subject: n.subject, paragraphs: [`${n.line}${where}`], footer: [notYou] };
  },
};
